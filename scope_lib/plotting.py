"""Figure and table output for the notebooks, and the confidence interval they report.

One `savefig` helper writes every figure as PNG and PDF to the top-level `figures/`
(handson-ml3 style), `save_table` writes CSV and Markdown beside them, `use_style` gives
every notebook the same look with one colour per method, and `mean_ci` is the "mean and
95% CI over seeds" used wherever a comparison is claimed.

Artefact names carry the paper artefact first: `fig3_training_dynamics`,
`table1_main_results`, `eq5_weight_distributions`; a notebook with no paper artefact
uses its number (`nb00_setup_accuracy`).
"""

from __future__ import annotations

import math
import os
import re
import sys
from pathlib import Path
from typing import Iterable

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTEFACT_NAME = re.compile(r"^(fig|table|eq|nb)\d+[a-z]?_[a-z0-9][a-z0-9_\-]*$")

# One colour per method, fixed across every figure (tab10 hues; SCOPE gets the strongest).
METHOD_COLORS: dict[str, str] = {
    "base": "#7f7f7f",  # grey: the untrained student is the reference, not a contender
    "grpo": "#1f77b4",
    "kd": "#2ca02c",
    "opd": "#ff7f0e",
    "scope": "#d62728",
    # Fig. 5 ablations (docs/DESIGN.md §2.10)
    "no_dpaw": "#9467bd",
    "no_student_weight": "#8c564b",
    "reversed_student_weight": "#e377c2",
    "no_teacher_weight": "#bcbd22",
    "reversed_teacher_weight": "#17becf",
}


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
    md.write_text(df.to_markdown(index=keep_index, floatfmt=floatfmt) + "\n", encoding="utf-8")
    return csv, md


def use_style() -> None:
    """Apply the shared matplotlib style. Selects the Agg backend when running headless
    outside Jupyter (scripts, CI); inside a kernel the inline backend is left alone."""
    import matplotlib

    headless = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if headless and "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    from cycler import cycler

    matplotlib.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "font.size": 11,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9,
            "xtick.labelsize": 10,
            "ytick.labelsize": 10,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "lines.linewidth": 1.8,
            "axes.prop_cycle": cycler(color=list(METHOD_COLORS.values())),
            "pdf.fonttype": 42,  # embed TrueType so PDF text stays editable/searchable
        }
    )


def method_color(method: str) -> str:
    """Colour of a method; ValueError naming the known methods for an unknown one."""
    try:
        return METHOD_COLORS[method]
    except KeyError:
        raise ValueError(
            f"method: {method!r} has no colour; known: {', '.join(METHOD_COLORS)}"
        ) from None


# --- confidence intervals --------------------------------------------------------------


def _t_two_sided_mass(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer df, closed form of Abramowitz & Stegun
    26.7.3 (odd df) and 26.7.4 (even df), theta = atan(t / sqrt(df))."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2 == 1:
        # (2/pi) [theta + sin(theta) (cos + 2/3 cos^3 + ... + (2*4..(df-3))/(1*3..(df-2)) cos^(df-2))]
        total, term = 0.0, c
        for k in range(1, (df - 1) // 2 + 1):
            if k > 1:
                term *= c * c * (2 * k - 2) / (2 * k - 1)
            total += term
        return 2.0 / math.pi * (theta + s * total) if df > 1 else 2.0 * theta / math.pi
    # sin(theta) [1 + 1/2 cos^2 + (1*3)/(2*4) cos^4 + ... + (1*3..(df-3))/(2*4..(df-2)) cos^(df-2)]
    total, term = 1.0, 1.0
    for k in range(1, df // 2):
        term *= c * c * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(confidence: float, df: int) -> float:
    """Two-sided Student t critical value: t with P(|T| < t) = confidence, for integer
    df >= 1 (e.g. 12.706 for df=1, 4.303 for df=2 at 95%). Bisection on theta in
    (0, pi/2), where the A&S closed form is monotone; exact to ~1e-12, no scipy needed."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence}")
    if int(df) != df or df < 1:
        raise ValueError(f"df: expected an integer >= 1, got {df}")
    df = int(df)
    low, high = 0.0, math.pi / 2
    for _ in range(200):
        mid = 0.5 * (low + high)
        if _t_two_sided_mass(math.sqrt(df) * math.tan(mid), df) < confidence:
            low = mid
        else:
            high = mid
        if high - low < 1e-15:
            break
    return math.sqrt(df) * math.tan(0.5 * (low + high))


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student t interval mean -/+ t_{df=n-1} * s / sqrt(n) with the
    sample standard deviation (ddof=1). For one value the interval is undefined and
    (mean, nan, nan) is returned, so a single-seed smoke run still tabulates."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"values: expected a non-empty 1-D sequence, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("values: expected finite numbers, got NaN or inf")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence}")
    mean = float(array.mean())
    if array.size == 1:
        return mean, math.nan, math.nan
    half_width = t_quantile(confidence, array.size - 1) * float(array.std(ddof=1)) / math.sqrt(array.size)
    return mean, mean - half_width, mean + half_width
