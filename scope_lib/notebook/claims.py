"""Claim lines of the studies' analyses for the results page, each judged by the one rule of
`scope_lib.notebook.report` / `scope_lib.notebook.verdict`: the error-recovery study (`recovery_lines`,
`mechanism_text`, from `scope_lib.studies.recovery_analysis`'s tables; notebook 02) and the DPAW weights
on base-student rollouts (`dpaw_check_lines`, `regime_lines`, from `scope_lib.studies.dpaw`;
notebook 03). The analyses stay prose-free and below the notebook-support layer; the sentences
that judge them are here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from scope_lib.notebook import report
from scope_lib.studies.dpaw import STUDENT_PATH, TEACHER_PATH, DirectionShares, ess_by_tau, sharpens
from scope_lib.studies.recovery import BUCKET_NAMES
from scope_lib.studies.recovery_analysis import paper_table7, pct, recovery_drop


def mechanism_text(conditions: pd.DataFrame, cases: pd.DataFrame, ratios: Sequence[float]) -> str:
    """The notebook's paragraph on recovery split by the first error: recovery with the error
    inside and before it per ratio, the share of prefixes holding it at the smallest and the
    largest ratio (`recovery_analysis.recovery_conditions` rows), and the mean first-error line in Q1 and Q4."""
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


def recovery_lines(rates: pd.DataFrame, conditions: pd.DataFrame, curve: pd.DataFrame, rho: pd.Series,
                  table6: pd.DataFrame, ratios: Sequence[float], *, intro: str, n_boot: int, seed: int) -> list[str]:
    """Notebook 02's lines for the results page: `intro`, then one verdict per ratio on the
    Q1 − Q4 gap (over all prefixes and, where split, over prefixes that hold the first error;
    `report.interval_claim` against Table 7's gap), one on the fall of recovery from the
    smallest to the largest ratio (`recovery_analysis.recovery_drop`, paired per rollout), the best
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
    drop, drop_low, drop_high, drop_n = recovery_drop(rates, n_boot=n_boot, seed=seed)
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


def dpaw_check_lines(weight_table: pd.DataFrame, conc: pd.DataFrame, shares: DirectionShares, tau: float, *,
                intro: str) -> list[str]:
    """The results page's lines for notebook 03: `intro` followed by the ESS fractions at `tau`,
    then three checks of the weights (`report.check`): Eq. 4 increasing and Eq. 5 decreasing in
    PPL in every within-group pair (`concordance_table`), the ESS fraction rising with tau on
    both paths, and the released sign reversing Eq. 4 for the hardest correct rollout
    (`direction_shares` at `tau`). A check with nothing to test (no pair with different PPL,
    weights uniform at every tau, no group with two correct rollouts) is "not run"."""
    ess = ess_by_tau(weight_table)
    if tau not in ess.index:
        raise ValueError(f"tau: {tau!r} is not among the weight table's temperatures {list(ess.index)}")
    monotone_known = bool(conc.notna().all().all())
    # Without spread in PPL (identical rollouts: ESS 1 at every tau, equal shares) there is nothing to check.
    ess_spread = bool(ess.notna().all().all() and (ess < 1.0 - 1e-12).any().all())
    direction_spread = not pd.isna(shares.paper) and abs(shares.paper - shares.released) > 1e-12
    student, teacher = conc["student path, Eq. 4"], conc["teacher path, Eq. 5"]
    return [
        f"{intro} At tau = {tau:g} the ESS fraction is {ess.loc[tau, STUDENT_PATH]:.3f} on the student path "
        f"and {ess.loc[tau, TEACHER_PATH]:.3f} on the teacher path (1 = uniform weights).",
        report.check(
            "Eq. 4 weights grow with the student's PPL and Eq. 5 weights shrink with the teacher's PPL within each group",
            bool(student.min() == 1.0 and teacher.max() == 0.0) if monotone_known else None,
            f"concordant pairs: student {student.min():.1%}, teacher {1 - teacher.max():.1%} (reversed)"
            if monotone_known else "no group has two rollouts with different PPL on both paths",
        ),
        report.check(
            "a smaller tau sharpens the weights and a larger tau flattens them towards uniform (ESS fraction rises with tau)",
            bool(all(sharpens(weight_table).values())) if ess_spread else None,
            "ESS fraction, student path: " + ", ".join(f"{v:.3f} at tau = {t:g}" for t, v in ess[STUDENT_PATH].items())
            + "; teacher path: " + ", ".join(f"{v:.3f} at tau = {t:g}" for t, v in ess[TEACHER_PATH].items()),
        ),
        report.check(
            "the released code's student sign reverses Eq. 4: the hardest correct rollout gets more than uniform weight "
            "under Eq. 4 and less under the released sign",
            bool(shares.paper > shares.uniform > shares.released) if direction_spread else None,
            f"its weight share at tau = {tau:g}: paper {shares.paper:.3f}, released {shares.released:.3f}, "
            f"uniform {shares.uniform:.3f}",
        ),
    ]


def regime_lines(regime: pd.DataFrame) -> list[str]:
    """The results-page line of the Eq. 4 regime (a measurement, not a verdict)."""
    values = regime["ess_frac@tau=1"].astype(float)
    missing = regime["source"].astype(str).str.endswith("(missing)")

    def shown(value: float, absent: bool) -> str:
        if value == value:
            return f"{value:.4f}"
        # a record without a value: no group had two or more correct answers to weigh
        return "not recorded" if absent else "undefined (no group with 2+ correct answers)"

    return ["**The Eq. 4 regime** (ESS fraction at tau = 1; 1 = uniform weights): " + "; ".join(
        f"{model}, {path}: {shown(value, absent)}"
        for model, path, value, absent in zip(regime["model"], regime["path"], values, missing)) + "."]
