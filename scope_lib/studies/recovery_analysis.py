"""Analyses of the error-recovery study's rows (`recovery.recovery_study`): tables and figures.

Data in, tables and figures out, no prose (the captions live beside notebook 02 in
`notebooks/captions/`, its claim lines in `scope_lib.notebook.claims`): the paper's numbers to
compare with (`paper_table6`, `paper_table7`, Appendix C.1), the first-error diagnosis of the
configured world (`task_diagnosis`), Table 7 with its Q1 − Q4 interval column
(`table7_with_gaps`), recovery split by whether the kept prefix already holds the student's
first error (`recovery_conditions`, `condition_rates`), the fall of recovery from the smallest to
the largest truncation ratio (`recovery_drop`), the two figures drawn by seaborn from the
per-rollout rows (`fig1b_figure`, `mechanism_figure`) and the error kinds per bucket
(`error_kind_shares`).

Recovery is reported unconditioned (every prefix, as in the paper) and, where the task
diagnoses the first wrong line, conditioned on whether the kept prefix already holds it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from scope_lib.studies import recovery
from scope_lib.common.plotting import legend_outside
from scope_lib.studies.recovery import BUCKET_LABELS, BUCKET_NAMES

RECOVERY_CONDITIONS = ("all", "error in prefix", "error not yet in prefix")
CONDITION_COLORS = dict(zip(RECOVERY_CONDITIONS, ("black", "tab:red", "tab:blue")))


def paper_table6() -> pd.DataFrame:
    """The paper's Table 6 (Appendix C.1): mean teacher PPL and NLL per token per bucket."""
    return pd.DataFrame(
        {"ppl_mean": [1.361, 1.565, 1.710, 2.383, 1.755], "nll_mean": [0.305, 0.448, 0.536, 0.688, 0.494]},
        index=[*BUCKET_LABELS, "Overall"],
    )


def paper_table7() -> pd.DataFrame:
    """The paper's Table 7: recovery rate (%) per truncation ratio (rows) and bucket, and the
    Q1 − Q4 gap as printed (from the unrounded rates, so not always Q1 − Q4 of the row)."""
    table = pd.DataFrame(
        [[64.9, 59.7, 54.0, 45.4], [55.8, 53.2, 50.1, 40.2], [44.8, 43.1, 41.0, 34.5], [35.8, 35.3, 32.6, 28.6]],
        index=pd.Index([0.2, 0.4, 0.6, 0.8], name="ratio"), columns=list(BUCKET_NAMES),
    )
    table["Q1-Q4 gap"] = [19.4, 15.6, 10.3, 7.2]
    return table


def pct(x: float) -> str:
    """A fraction as a percentage with one decimal ("n/a" for NaN)."""
    return "n/a" if pd.isna(x) else f"{100 * x:.1f} %"


def points(x: float) -> str:
    """A difference of fractions in signed percentage points ("n/a" for NaN)."""
    return "n/a" if pd.isna(x) else f"{100 * x:+.1f}"


def task_diagnosis(task) -> tuple[Callable, str]:
    """(diagnose, description) for the world's tiny task module (`world.task`): its own
    `first_error` and the first line of its docstring. Off the tiny scale (task None) the
    chain diagnosis, which finds no worked steps in real problems and splits no prefix."""
    if task is None:
        return recovery.first_chain_error, "no tiny task"
    if not callable(getattr(task, "first_error", None)):
        raise ValueError(f"task: expected a task module with a first_error function, got {task!r}")
    return task.first_error, (task.__doc__ or "").strip().splitlines()[0]


def table7_with_gaps(rates: pd.DataFrame, *, n_boot: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(Table 7, gaps): `recovery.recovery_table` with a "gap 95% CI" column in points, and
    `recovery.quartile_gap` indexed by ratio (fractions)."""
    table = recovery.recovery_table(rates)
    gaps = recovery.quartile_gap(rates, n_boot=n_boot, seed=seed).set_index("ratio")
    table["gap 95% CI"] = [f"[{100 * lo:+.1f}, {100 * hi:+.1f}]" for lo, hi in zip(gaps["low"], gaps["high"])]
    return table, gaps


def recovery_conditions(rates: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Recovery per truncation ratio for all prefixes and split by `prefix_has_error`.

    rates: `recovery.recovery_study(...).rates`. One row per (ratio, condition) with columns
    n (prefixes), share (of the ratio's prefixes), recovery, low, high (bootstrap over
    rollouts), and gap, gap_low, gap_high, the Q1 − Q4 recovery gap (`recovery.quartile_gap`,
    buckets from the whole population) over n_q1 and n_q4 rollouts. The two split conditions appear only where the
    task diagnoses the first error (`prefix_has_error` not None). Fractions in [0, 1].
    """
    known = rates[rates["prefix_has_error"].notna()]
    subsets = {"all": rates}
    if not known.empty:
        holds = known["prefix_has_error"].astype(bool)
        subsets.update({"error in prefix": known[holds], "error not yet in prefix": known[~holds]})
    rows = []
    for condition, subset in subsets.items():
        gaps = recovery.quartile_gap(subset, n_boot=n_boot, seed=seed).set_index("ratio") if not subset.empty else None
        for ratio in sorted(rates["ratio"].unique()):
            cell = subset.loc[subset["ratio"] == ratio, "recovery"]
            mean, low, high = recovery.bootstrap_mean_ci(cell, n_boot=n_boot, seed=seed)
            gap = gaps.loc[ratio] if gaps is not None and ratio in gaps.index else \
                pd.Series({"gap": np.nan, "low": np.nan, "high": np.nan, "n_q1": 0, "n_q4": 0})
            rows.append({"ratio": float(ratio), "condition": condition, "n": int(cell.size),
                         "share": cell.size / int((rates["ratio"] == ratio).sum()), "recovery": mean, "low": low,
                         "high": high, "gap": float(gap["gap"]), "gap_low": float(gap["low"]),
                         "gap_high": float(gap["high"]), "n_q1": int(gap["n_q1"]), "n_q4": int(gap["n_q4"])})
    return pd.DataFrame(rows)


def recovery_drop(rates: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float, int]:
    """(mean, low, high, rollouts): recovery at the largest truncation ratio minus at the
    smallest, paired per rollout (each incorrect rollout is truncated at every ratio), with
    a bootstrap interval over rollouts."""
    table = rates.pivot_table(index="rollout", columns="ratio", values="recovery", aggfunc="mean")
    drop = (table[table.columns.max()] - table[table.columns.min()]).dropna()
    mean, low, high = recovery.bootstrap_mean_ci(drop, n_boot=n_boot, seed=seed)
    return mean, low, high, int(drop.size)


def condition_rates(rates: pd.DataFrame) -> pd.DataFrame:
    """The rows of `rates` once under condition "all" and, where the task diagnosed the first
    error (`prefix_has_error` not None), once more under "error in prefix" or "error not yet
    in prefix": the long form `mechanism_figure` draws (each row keeps its columns)."""
    if "prefix_has_error" not in rates.columns:
        raise ValueError("rates: expected a 'prefix_has_error' column, as recovery.recovery_study returns")
    known = rates[rates["prefix_has_error"].notna()]
    holds = known["prefix_has_error"].astype(bool)
    parts = [rates.assign(condition="all"), known[holds].assign(condition="error in prefix"),
             known[~holds].assign(condition="error not yet in prefix")]
    return pd.concat(parts, ignore_index=True)


def _draw_recovery(ax, data: pd.DataFrame, *, hue: str, hue_order: Sequence[str], palette: dict, ratios: Sequence[float],
                   n_boot: int, seed: int, dodge: float) -> None:
    """Mean recovery (%) per ratio and `hue`, joined across ratios, with the bootstrap interval
    over rollouts of `recovery.bootstrap_mean_ci` computed by seaborn from the rows of `data`."""
    import seaborn as sns

    frame = data.assign(recovery=100 * data["recovery"])
    sns.pointplot(frame, x="ratio", y="recovery", hue=hue, order=list(ratios), hue_order=list(hue_order),
                  palette=palette, errorbar=recovery.bootstrap_errorbar(n_boot=n_boot, seed=seed), dodge=dodge,
                  markersize=5, linewidth=1.5, capsize=0.06, err_kws={"linewidth": 1.2}, ax=ax)
    ax.set_ylim(-3, 103)  # the metric's range, with room for a marker at 0 or 100
    ax.set_yticks(range(0, 101, 20))
    ax.set_xticks(range(len(ratios)), [f"{r:g}" for r in ratios])
    legend_outside(ax)


def fig1b_figure(rates: pd.DataFrame, ratios: Sequence[float], *, n_boot: int, seed: int, scale_label: str):
    """Fig. 1b: recovery rate (%) against truncation ratio, one line per teacher-PPL quartile,
    points with 95% bootstrap intervals over rollouts (the intervals of `recovery.recovery_curve`,
    drawn by seaborn from the rows of `rates`). Returns the figure."""
    import matplotlib.pyplot as plt

    data = rates.assign(quartile=[BUCKET_LABELS[int(b)] for b in rates["bucket"]])
    palette = dict(zip(BUCKET_LABELS, plt.cm.viridis(np.linspace(0.0, 0.85, len(BUCKET_LABELS)))))
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    _draw_recovery(ax, data, hue="quartile", hue_order=BUCKET_LABELS, palette=palette, ratios=ratios, n_boot=n_boot,
                   seed=seed, dodge=0.4)
    ax.get_legend().set_title("teacher-PPL bucket")
    ax.set(title=f"this run: {scale_label} world, mean and 95 % bootstrap CI",
           xlabel="truncation ratio (share of the flawed response kept)", ylabel="teacher recovery rate (%)")
    fig.suptitle("Fig. 1b: error recovery from truncated incorrect student rollouts")
    fig.tight_layout()
    return fig


def mechanism_figure(rates: pd.DataFrame, ratios: Sequence[float], *, n_boot: int, seed: int, scale_label: str):
    """Recovery (%) per ratio over all prefixes and split by whether the prefix holds the first
    error, with 95% bootstrap intervals over rollouts (those of `recovery_conditions`).
    None when the task gives no diagnosis (nothing to split)."""
    import matplotlib.pyplot as plt

    data = condition_rates(rates)
    conditions = [c for c in RECOVERY_CONDITIONS if (data["condition"] == c).any()]
    if conditions == ["all"]:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    _draw_recovery(ax, data, hue="condition", hue_order=conditions, palette=CONDITION_COLORS, ratios=ratios,
                   n_boot=n_boot, seed=seed, dodge=0.3)
    ax.set(xlabel="truncation ratio", ylabel="teacher recovery rate (%)",
           title=f"recovery by whether the prefix holds the first error ({scale_label})")
    fig.tight_layout()
    return fig


def error_kind_shares(cases: pd.DataFrame) -> pd.DataFrame:
    """Share of each diagnosed error kind per bucket (rows "Q1".."Q4" present, kinds as
    columns, fractions summing to 1 per row); empty when no rollout has a diagnosis."""
    if not {"bucket", "error_kind"} <= set(cases.columns):
        raise ValueError("cases: expected 'bucket' and 'error_kind' columns, as recovery.recovery_study returns")
    return (cases.dropna(subset=["error_kind"]).groupby("bucket")["error_kind"].value_counts(normalize=True)
            .unstack(fill_value=0.0).rename(index=dict(enumerate(BUCKET_NAMES))))
