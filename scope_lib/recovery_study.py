"""What notebook 02 reports about the error-recovery study (`scope_lib.recovery`).

`recovery.recovery_study` runs the experiment; this module holds the rest of notebook 02:
the paper's numbers it compares with (`paper_table6`, `paper_table7`, Appendix C.1), the
first-error diagnosis of the configured world (`task_diagnosis`), Table 7 with its Q1 − Q4
interval column (`table7_with_gaps`), the two figures drawn by seaborn from the per-rollout
rows (`fig1b_figure`, `mechanism_figure`), the error kinds per bucket (`error_kind_shares`)
and the verdict lines for the results page (`verdict_lines`).

Recovery is reported unconditioned (every prefix, as in the paper) and, where the task
diagnoses the first wrong line, conditioned on whether the kept prefix already holds it
(`report.recovery_conditions`, `condition_rates`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from scope_lib import recovery, report
from scope_lib.recovery import BUCKET_LABELS, BUCKET_NAMES

CONDITION_COLORS = dict(zip(report.RECOVERY_CONDITIONS, ("black", "tab:red", "tab:blue")))
# Captions for the results page (nb.Context.savefig), saying what `fig1b_figure` and `mechanism_figure` draw.
FIG1B_CAPTION = ("Mean teacher recovery rate per truncation ratio and teacher-PPL quartile of the incorrect student "
                 "rollouts, with the 95% bootstrap interval over rollouts (one run: the rollouts are the resampled "
                 "unit); the paper's Table 7 is quoted in the notebook, not drawn.")
MECHANISM_CAPTION = ("Mean recovery per truncation ratio over all prefixes and split by whether the kept prefix already "
                     "holds the student's first wrong line (the task's diagnosis), with 95% bootstrap intervals over "
                     "rollouts; a condition without prefixes at a ratio has no point.")

__all__ = [
    "CONDITION_COLORS", "FIG1B_CAPTION", "MECHANISM_CAPTION", "condition_rates", "error_kind_shares", "fig1b_figure", "mechanism_figure", "mechanism_text",
    "paper_table6",
    "paper_table7", "pct", "points", "task_diagnosis", "table7_with_gaps", "verdict_lines",
]


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

    from scope_lib.plotting import legend_outside

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
    error, with 95% bootstrap intervals over rollouts (those of `report.recovery_conditions`).
    None when the task gives no diagnosis (nothing to split)."""
    import matplotlib.pyplot as plt

    data = condition_rates(rates)
    conditions = [c for c in report.RECOVERY_CONDITIONS if (data["condition"] == c).any()]
    if conditions == ["all"]:
        return None
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    _draw_recovery(ax, data, hue="condition", hue_order=conditions, palette=CONDITION_COLORS, ratios=ratios,
                   n_boot=n_boot, seed=seed, dodge=0.3)
    ax.set(xlabel="truncation ratio", ylabel="teacher recovery rate (%)",
           title=f"recovery by whether the prefix holds the first error ({scale_label})")
    fig.tight_layout()
    return fig


def mechanism_text(conditions: pd.DataFrame, cases: pd.DataFrame, ratios: Sequence[float]) -> str:
    """The notebook's paragraph on recovery split by the first error: recovery with the error
    inside and before it per ratio, the share of prefixes holding it at the smallest and the
    largest ratio (`report.recovery_conditions` rows), and the mean first-error line in Q1 and Q4."""
    by = conditions.set_index(["condition", "ratio"])
    if "error in prefix" not in by.index.get_level_values(0):
        raise ValueError("conditions: no 'error in prefix' rows; the task gave no first-error diagnosis")
    error_line = cases.groupby("bucket")["error_line"].mean()
    return (
        "With the first error inside the prefix the teacher recovers "
        + ", ".join(f"{pct(by.loc[('error in prefix', r), 'recovery'])} at {r:g}" for r in ratios)
        + "; before it, " + ", ".join(f"{pct(by.loc[('error not yet in prefix', r), 'recovery'])} at {r:g}" for r in ratios)
        + ". The share of prefixes holding the error grows from "
        f"{pct(by.loc[('error in prefix', min(ratios)), 'share'])} at {min(ratios):g} to "
        f"{pct(by.loc[('error in prefix', max(ratios)), 'share'])} at {max(ratios):g}, so the unconditioned rate mixes "
        "the two cases in proportions that change with the ratio and with the bucket. The first error sits on line "
        f"{error_line.iloc[0]:.2f} on average in Q1 and line {error_line.iloc[-1]:.2f} in Q4 (0 = the first line)."
    )


def error_kind_shares(cases: pd.DataFrame) -> pd.DataFrame:
    """Share of each diagnosed error kind per bucket (rows "Q1".."Q4" present, kinds as
    columns, fractions summing to 1 per row); empty when no rollout has a diagnosis."""
    if not {"bucket", "error_kind"} <= set(cases.columns):
        raise ValueError("cases: expected 'bucket' and 'error_kind' columns, as recovery.recovery_study returns")
    return (cases.dropna(subset=["error_kind"]).groupby("bucket")["error_kind"].value_counts(normalize=True)
            .unstack(fill_value=0.0).rename(index=dict(enumerate(BUCKET_NAMES))))


def verdict_lines(rates: pd.DataFrame, conditions: pd.DataFrame, curve: pd.DataFrame, rho: pd.Series,
                  table6: pd.DataFrame, ratios: Sequence[float], *, intro: str, n_boot: int, seed: int) -> list[str]:
    """Notebook 02's lines for the results page: `intro`, then one verdict per ratio on the
    Q1 − Q4 gap (over all prefixes and, where split, over prefixes that hold the first error;
    `report.interval_claim` against Table 7's gap), one on the fall of recovery from the
    smallest to the largest ratio (`report.recovery_drop`, paired per rollout), the best
    bucket's level and the rank correlation (no verdict), and a check that mean teacher PPL
    rises from Q1 to Q4 (`table6`, `recovery.bucket_stats`)."""
    table7 = paper_table7()
    evidence = "one run, bootstrap over rollouts: {q1} in Q1, {q4} in Q4"
    lines = [intro]
    by = conditions.set_index(["condition", "ratio"])
    for condition, label in (("all", "all prefixes"), ("error in prefix", "prefixes that hold the first error")):
        if condition not in by.index.get_level_values(0):
            continue
        for ratio in ratios:
            row = by.loc[(condition, ratio)]
            paper_gap = table7["Q1-Q4 gap"].get(ratio)
            paper = (f"{paper_gap:+.1f} points (Table 7" + (")" if condition == "all" else ", all prefixes; not split)")
                     if paper_gap is not None else "no Table 7 row at this ratio")
            lines.append(report.interval_claim(f"Q1 − Q4 recovery at ratio {ratio:g}, {label}", row["gap"], row["gap_low"],
                                               row["gap_high"], "greater", paper,
                                               evidence=evidence.format(q1=int(row["n_q1"]), q4=int(row["n_q4"]))))
    drop, drop_low, drop_high, drop_n = report.recovery_drop(rates, n_boot=n_boot, seed=seed)
    paper_drop = table7[list(BUCKET_NAMES)].mean(axis=1)
    lines.append(report.interval_claim(
        f"recovery at ratio {max(ratios):g} − at {min(ratios):g}, all prefixes", drop, drop_low, drop_high, "less",
        f"{paper_drop.iloc[-1] - paper_drop.iloc[0]:+.1f} points (Table 7, 0.8 − 0.2, mean of the four buckets: "
        f"{paper_drop.iloc[0]:.1f} → {paper_drop.iloc[-1]:.1f})",
        evidence=f"one run, paired per rollout, bootstrap over {drop_n} rollouts"))
    best = curve[curve["ratio"] == max(ratios)].sort_values("recovery").iloc[-1]
    lines.append(f"- At ratio {max(ratios):g} the best bucket ({best['quartile']}) recovers {pct(best['recovery'])} "
                 f"[{pct(best['low'])}, {pct(best['high'])}] (paper: about 35 %); a level, not a comparison, so no verdict.")
    lines.append("- Rank correlation of teacher PPL with recovery over all rollouts (supplementary, no verdict): Spearman "
                 + ", ".join(f"{v:+.2f} at {r:g}" for r, v in rho.items()) + " (negative: high-PPL prefixes recover less).")
    lines.append(report.check("mean teacher PPL rises from Q1 to Q4 (the quartile split itself)",
                              bool(np.all(np.diff(table6["ppl_mean"].iloc[:4].to_numpy()) > 0)),
                              ", ".join(f"{v:.3f}" for v in table6["ppl_mean"].iloc[:4])))
    return lines
