"""Figure and table output for the notebooks, and the confidence interval they report.

One `savefig` helper writes every figure as PNG and PDF to the top-level `figures/`
(handson-ml3 style), `save_table` writes CSV and Markdown beside them, `use_style` gives
every notebook the same look (a seaborn theme) with one colour per method. The intervals it
draws are scope_lib/common/stats.py's `mean_ci`, the "mean and 95% CI over seeds" used wherever a
comparison is claimed.

The one vocabulary of every figure and table: `display_name` turns a variant key of
`scope_lib/experiments/grid.py` (`opd_g8`, `no_student_weight`, `scope_tau0.5`) into the name a reader
sees (OPD (G = 8), w/o student weight, SCOPE (τ = 0.5)), `method_palette` gives seaborn the
colours keyed by those names, and `metric_label` writes Avg@k and Pass@k.

Artefact names carry the paper artefact first: `fig3_training_dynamics`,
`table1_main_results`, `eq5_weight_distributions`; a notebook with no paper artefact
uses its number (`nb00_setup_accuracy`).

Statistical drawing goes through seaborn with the project's interval: `point_interval` (per-seed
points, mean and the 95% t interval of `mean_ci` computed from those points, the interval the
verdict lines use, not seaborn's bootstrap), `band` (a curve's interval clipped to the metric's
range), `k_axis` (a log2 axis labelled with the values of k) and `legend_outside`.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from scope_lib.common.stats import mean_ci
from scope_lib.common.paths import REPO_ROOT

ARTEFACT_NAME = re.compile(r"^(fig|table|eq|nb)\d+[a-z]?_[a-z0-9][a-z0-9_\-]*$")

# One colour per method, fixed across every figure (tab10 hues; SCOPE gets the strongest).
METHOD_COLORS: dict[str, str] = {
    "base": "#7f7f7f",  # grey: the untrained student is the reference, not a contender
    "grpo": "#1f77b4",
    "kd": "#2ca02c",
    "opd": "#ff7f0e",
    "scope": "#d62728",
    "opd_g8": "#ffbb78",  # light orange: OPD with as many rollouts as SCOPE (experiments.EXTRA_VARIANTS)
    "hybrid": "#aec7e8",  # light blue: GRPO (blue) plus the teacher term (experiments.METHODS)
    # Fig. 5 ablations (docs/DESIGN.md §2.10, experiments.ABLATIONS)
    "no_dpaw": "#9467bd",
    "no_dpaw_normalized": "#c5b0d5",  # light purple: no_dpaw keeping DPAW's per-group normalisation
    "no_student_weight": "#8c564b",
    "reversed_student_weight": "#e377c2",
    "no_teacher_weight": "#bcbd22",
    "reversed_teacher_weight": "#17becf",
    "teacher": "#000000",  # the teacher model (notebook 00), not a trained variant
}


# The name a reader sees for each variant key of scope_lib/experiments/grid.py (METHODS, EXTRA_VARIANTS,
# ABLATIONS, "base") and for the two models of the world; the numbered families are named by
# `display_name` from FAMILY_NAMES.
DISPLAY_NAMES: dict[str, str] = {
    "base": "base student",
    "student": "base student",
    "teacher": "teacher",
    "grpo": "GRPO",
    "kd": "KD",
    "opd": "OPD",
    "opd_g8": "OPD (G = 8)",
    "hybrid": "RL-KD hybrid",
    "scope": "SCOPE",
    "no_dpaw": "w/o DPAW",
    "no_dpaw_normalized": "w/o DPAW (1/n weights)",
    "no_student_weight": "w/o student weight",
    "reversed_student_weight": "reversed student weight",
    "no_teacher_weight": "w/o teacher weight",
    "reversed_teacher_weight": "reversed teacher weight",
}
# Numbered families (experiments.FAMILIES): prefix -> name pattern of the value.
FAMILY_NAMES: dict[str, str] = {
    "scope_tau": "SCOPE (τ = {})",
    "scope_tau_student": "SCOPE (student τ = {})",
    "hybrid_beta": "RL-KD hybrid (β = {})",
}


def display_name(variant: str) -> str:
    """The name a reader sees for a variant key (`opd_g8` -> "OPD (G = 8)", `scope_tau0.5` ->
    "SCOPE (τ = 0.5)", `hybrid_beta0.3` -> "RL-KD hybrid (β = 0.3)"); a key it does not know comes
    back unchanged, so nothing is named that was not run."""
    variant = str(variant)
    if variant in DISPLAY_NAMES:
        return DISPLAY_NAMES[variant]
    for prefix in sorted(FAMILY_NAMES, key=len, reverse=True):  # scope_tau_student before scope_tau
        if variant.startswith(prefix):
            try:
                value = float(variant.removeprefix(prefix))
            except ValueError:
                continue
            return FAMILY_NAMES[prefix].format(f"{value:g}")
    return variant


def method_palette(variants: Iterable[str]) -> dict[str, str]:
    """{display name: colour} of `variants` (METHOD_COLORS), for seaborn's `palette` when the
    hue column holds display names; a variant without a colour of its own takes its family's
    (SCOPE's for `scope_tau<v>`, the hybrid's for `hybrid_beta<v>`)."""
    palette = {}
    for variant in variants:
        key = variant if variant in METHOD_COLORS else next(
            (base for prefix, base in (("scope_tau", "scope"), ("hybrid_beta", "hybrid")) if str(variant).startswith(prefix)),
            variant)
        palette[display_name(variant)] = method_color(key)
    return palette


def metric_label(metric: str, k: int | str = "k") -> str:
    """"Avg@16" / "Pass@16" for the metric columns `avg@k` / `pass@k` at k (unknown names unchanged)."""
    names = {"avg@k": "Avg@{}", "pass@k": "Pass@{}"}
    return names[metric].format(k) if metric in names else metric


def resolve_figures_dir(figures_dir: str | os.PathLike = "figures") -> Path:
    """`figures_dir` relative to the repository root unless absolute, so a notebook
    executed with cwd=notebooks/ still writes to the top-level figures/."""
    path = Path(figures_dir)
    return path if path.is_absolute() else REPO_ROOT / path


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not ARTEFACT_NAME.match(name):
        raise ValueError(
            f"name: {name!r} should start with its artefact and have no extension, "
            "e.g. 'fig3_training_dynamics', 'table1_main_results', 'nb00_setup_accuracy'"
        )


def savefig(fig, name: str, *, figures_dir: str | os.PathLike = "figures") -> tuple[Path, Path]:
    """Write `<figures_dir>/<name>.png` (150 dpi) and `.pdf`; returns (png, pdf) paths."""
    _check_name(name)
    out = resolve_figures_dir(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    fig.savefig(png, dpi=150, bbox_inches="tight")
    # No creation date: the committed PDFs then change only when the figure does.
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None})
    return png, pdf


def save_table(
    df, name: str, *, figures_dir: str | os.PathLike = "figures", floatfmt: str = ".3f"
) -> tuple[Path, Path]:
    """Write `<name>.csv` (full precision) and `<name>.md` (floats as `floatfmt`) beside
    the figures; returns (csv, md) paths. The index is written only when it carries
    information (not a default 0..n-1 RangeIndex)."""
    import pandas as pd

    _check_name(name)
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df: expected a pandas DataFrame, got {type(df).__name__}")
    out = resolve_figures_dir(figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    keep_index = not (isinstance(df.index, pd.RangeIndex) and df.index.name is None)
    csv, md = out / f"{name}.csv", out / f"{name}.md"
    df.to_csv(csv, index=keep_index)
    md.write_text(markdown_table(df, index=keep_index, floatfmt=floatfmt) + "\n", encoding="utf-8")
    return csv, md


def markdown_table(df, *, index: bool = True, floatfmt: str = ".3f") -> str:
    """`df` as a pipe table: floats as `floatfmt`, integers as integers (a count stays `282`, not
    `282.000`, even beside float columns; so does a float column whose values are all whole and not
    all 0, such as a mean of equal counts), and text as written (a cell such as `+1.5` is not
    reformatted as a number). The index levels come first when `index`, an unnamed one headed ""."""
    import pandas as pd
    from tabulate import tabulate

    frame = df.reset_index() if index else df.reset_index(drop=True)
    headers = ["" if index and i < df.index.nlevels and df.index.names[i] is None else str(name)
               for i, name in enumerate(frame.columns)]
    series = [frame.iloc[:, i] for i in range(frame.shape[1])]
    columns = [column.tolist() for column in series]  # numpy scalars to Python ints and floats, per column
    text_columns = [i for i, column in enumerate(series) if not pd.api.types.is_numeric_dtype(column.dtype)]

    def whole(column) -> bool:  # a float column of counts (e.g. a mean of equal counts): no decimals
        values = column.to_numpy(dtype=np.float64) if pd.api.types.is_float_dtype(column.dtype) else None
        finite = values[np.isfinite(values)] if values is not None else None
        return finite is not None and finite.size > 0 and bool(np.all(finite == np.round(finite))) and bool(np.any(finite != 0))

    formats = [".0f" if whole(column) else floatfmt for column in series]
    rows = [list(row) for row in zip(*columns)]
    return tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=formats, disable_numparse=text_columns or False)


def use_style() -> None:
    """Apply the shared look: seaborn's `whitegrid` theme at `notebook` scale with the method
    colours as its palette, then the project's sizes. Selects the Agg backend when running
    headless outside Jupyter (scripts, CI); inside a kernel the inline backend is left alone."""
    import matplotlib

    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette=list(METHOD_COLORS.values()), rc={
        "figure.figsize": (6.4, 4.0),
        "figure.dpi": 100,
        "savefig.dpi": 150,
        "font.size": 11,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "legend.fontsize": 9,
        "legend.title_fontsize": 9,
        "xtick.labelsize": 10,
        "ytick.labelsize": 10,
        "axes.grid": True,
        "grid.alpha": 0.6,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "lines.linewidth": 1.8,
        "pdf.fonttype": 42,  # embed TrueType so PDF text stays editable/searchable
    })


def method_color(method: str) -> str:
    """Colour of a method; ValueError naming the known methods for an unknown one."""
    try:
        return METHOD_COLORS[method]
    except KeyError:
        raise ValueError(
            f"method: {method!r} has no colour; known: {', '.join(METHOD_COLORS)}"
        ) from None


# --- seaborn-based drawing ---------------------------------------------------------------


def t_interval(values: Iterable[float]) -> tuple[float, float]:
    """(low, high) of `mean_ci`: the 95% t interval over seeds, as a seaborn `errorbar` callable."""
    _, low, high = mean_ci(values)
    return low, high


def t_interval_within(lowest: float, highest: float) -> Callable[[Iterable[float]], tuple[float, float]]:
    """A seaborn `errorbar` callable: `t_interval` (the 95% t interval over seeds of
    `mean_ci`, the interval of the verdict lines) clipped to the metric's range
    [lowest, highest], e.g. (0, 100) for a rate in percent. One value has no interval (NaN)."""
    if not lowest < highest:
        raise ValueError(f"lowest, highest: expected lowest < highest, got {lowest}, {highest}")

    def interval(values: Iterable[float]) -> tuple[float, float]:
        low, high = t_interval(values)
        return float(np.clip(low, lowest, highest)), float(np.clip(high, lowest, highest))

    return interval


@contextlib.contextmanager
def same_jitter(seed: int = 0):
    """Seed numpy's global generator inside the block and restore it after: seaborn's stripplot
    jitters with it, so a figure redrawn from the same numbers gets the same dots (and the same
    PNG bytes) whatever ran before it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def point_interval(ax, data, *, x: str, y: str, hue: str | None = None, order: list | None = None,
                   hue_order: list | None = None, palette: dict | None = None, scale: float = 1.0,
                   clip: tuple[float, float] | None = None):
    """Per-seed points (one row of `data` each) and, per group, the mean with its 95% t interval
    (`mean_ci` of those same rows; no interval for a single seed), the interval drawn clipped to
    the metric's range `clip` when given. `scale` multiplies `y` (100 for percent). Returns the
    summary: one row per group with mean, low, high (unclipped) and n."""
    import pandas as pd
    import seaborn as sns

    for column in [x, y] + ([hue] if hue else []):
        if column not in data.columns:
            raise ValueError(f"data: no column {column!r}; columns are {list(data.columns)}")
    if data.empty:
        raise ValueError("data: no rows to draw")
    frame = data.assign(**{y: scale * data[y].astype(float)})
    order = order or list(dict.fromkeys(frame[x]))
    hue_order = (hue_order or list(dict.fromkeys(frame[hue]))) if hue else None
    if palette is None and hue:
        palette = {level: METHOD_COLORS.get(level, None) for level in hue_order}
        palette = palette if all(palette.values()) else None
    common = dict(data=frame, x=x, y=y, hue=hue, order=order, hue_order=hue_order, palette=palette, ax=ax)
    # hue == x colours each category and needs neither dodging nor a legend
    dodged = bool(hue) and hue != x
    levels = len(hue_order) if dodged else 1
    with same_jitter():
        sns.stripplot(**common, dodge=dodged, jitter=0.08, size=4, alpha=0.45, legend=False, zorder=1)
    # pointplot's dodge spreads the first and last hue by this much, stripplot's by 0.8 (n-1)/n.
    interval = t_interval if clip is None else t_interval_within(*clip)
    sns.pointplot(**common, estimator="mean", errorbar=interval, dodge=0.8 * (levels - 1) / levels if dodged else False,
                  legend=dodged, linestyle="none", markers="D", markersize=6, capsize=0.08, err_kws={"linewidth": 1.6}, zorder=3)
    keys = [x] + ([hue] if hue else [])
    rows = []
    for key, part in frame.groupby(keys, sort=False):
        mean, low, high = mean_ci(part[y])
        rows.append({**dict(zip(keys, key)), "mean": mean, "low": low, "high": high, "n": len(part)})
    return pd.DataFrame(rows)


def band(ax, x, low, high, *, clip: tuple[float, float] | None = (0.0, 1.0), **kwargs):
    """Fill between `low` and `high` (a curve's interval) clipped to the metric's range `clip`
    (None: unclipped); points where either bound is NaN are left open. Returns the collection,
    or None when no point has an interval."""
    x, low, high = (np.asarray(v, dtype=np.float64) for v in (x, low, high))
    if not (x.shape == low.shape == high.shape) or x.ndim != 1:
        raise ValueError(f"x, low, high: expected 1-D arrays of one length, got {x.shape}, {low.shape}, {high.shape}")
    if clip is not None:
        if clip[0] >= clip[1]:
            raise ValueError(f"clip: expected (lowest, highest) with lowest < highest, got {clip}")
        low, high = np.clip(low, *clip), np.clip(high, *clip)
    defined = np.isfinite(low) & np.isfinite(high)
    if not defined.any():
        return None
    kwargs.setdefault("alpha", 0.2)
    kwargs.setdefault("linewidth", 0)
    return ax.fill_between(x, low, high, where=defined, **kwargs)


def k_axis(ax, ks: Iterable[int]) -> list[int]:
    """A log2 x axis labelled with the values of k: the powers of two among `ks` and the largest
    k (no 10^0-style labels, no minor ticks). Returns the labelled ks."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ValueError(f"ks: expected positive integers, got {ks}")
    shown = sorted({k for k in ks if k & (k - 1) == 0} | {ks[-1]})
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(shown))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(ks[0] / 2 ** 0.25, ks[-1] * 2 ** 0.25)
    return shown


def legend_outside(target, handles: list | None = None, labels: list[str] | None = None, **kwargs):
    """One legend outside the data area: right of a single Axes, or right of a Figure's axes.
    Its entries are `handles` and `labels` when given, else the labelled artists of every
    axes, each label once. The axes' own legends are removed. Returns the legend."""
    from matplotlib.figure import Figure

    axes = target.axes if isinstance(target, Figure) else [target]
    found: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if not label.startswith("_"):
                found.setdefault(label, handle)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles is None or labels is None:
        handles, labels = list(found.values()), list(found)
    if not labels or len(handles) != len(labels):
        raise ValueError(f"handles, labels: expected as many handles as labels, at least one; got "
                         f"{len(handles)} and {len(labels)}")
    kwargs.setdefault("frameon", False)
    if isinstance(target, Figure):
        target.tight_layout()
        right = max(ax.get_position().x1 for ax in axes)
        return target.legend(handles, labels, loc="upper left", bbox_to_anchor=(right + 0.01, 0.95), **kwargs)
    return target.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def variant_ticks(ax, variants: list[str], *, axis: str = "x") -> None:
    """Label the categorical `axis` of `ax` (one category per variant, in order) with the display
    names, each on one line; on the x axis tilted when any name is longer than a short word."""
    names = [display_name(v) for v in variants]
    if axis == "y":
        ax.set_yticks(range(len(names)), names)
        return
    tilted = max(map(len, names), default=0) > 6
    ax.set_xticks(range(len(names)), names, rotation=25 if tilted else 0, ha="right" if tilted else "center",
                  rotation_mode="anchor" if tilted else "default")


def per_seed_panels(df, variants: list[str], k: int, title: str):
    """Tables 1 and 2 per seed: Avg@k and Pass@k side by side, one dot per seed (the mean over
    the eval sets, rows of `experiments.grid.run_grid` with eval_set "average"), the mean and its
    95% t interval over seeds per variant, and the base student (evaluated once) as a dashed
    line. Rates in %, kept in [0, 100]. Returns the Figure."""
    import matplotlib.pyplot as plt

    average = df[(df.eval_set == "average") & (df.variant != "base")]
    base = df[(df.eval_set == "average") & (df.variant == "base")].iloc[0]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, metric in zip(axes, ("avg@k", "pass@k")):
        point_interval(ax, average, x="variant", y=metric, order=variants, hue="variant", hue_order=variants,
                       scale=100, clip=(0, 100))
        ax.axhline(100 * base[metric], color=method_color("base"), linestyle="--", label=display_name("base"))
        variant_ticks(ax, variants)
        ax.set(xlabel="", ylabel=f"{metric_label(metric, k)} (%)", title=f"{metric_label(metric, k)}, mean over the eval sets")
        ax.set_ylim(max(ax.get_ylim()[0], 0), min(ax.get_ylim()[1], 100))  # a rate stays in [0, 100]
    fig.suptitle(title)
    legend_outside(fig)
    return fig
