"""The report's verdict helpers: per-seed summary quantities, verdict lines under the one rule,
the recovery split of notebook 02 and the power record of the results page, each against hand
computations."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from scope_lib.studies import recovery_analysis
from scope_lib.notebook import report, verdict
from scope_lib.evaluate import EvalResult

T_975_4 = 2.7764451  # two-sided 95% Student t, 4 degrees of freedom


def evaluation() -> EvalResult:
    """Two sets of two problems, k = 4: correct counts 2, 0 (set a) and 1, 4 (set b)."""
    return EvalResult(k=4, correct={
        "a": np.array([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool),
        "b": np.array([[1, 0, 0, 0], [1, 1, 1, 1]], dtype=bool),
    })


# --- per-seed summary quantities ----------------------------------------------------------


def test_pass_at_area_and_gain_match_hand_computed_pass_at_k():
    results = {("scope", 0): evaluation(), ("scope", 1): evaluation(), ("opd", 0): evaluation()}
    # Unbiased Pass@k = 1 - C(n-c, k) / C(n, k), n = 4, per problem, then the mean of the two set means:
    # k=1: a (0.5 + 0) / 2, b (0.25 + 1) / 2; k=2: c=2 -> 5/6, c=1 -> 1/2; k=3: c=2 -> 1, c=1 -> 3/4.
    pass1, pass2, pass3, pass4 = (0.25 + 0.625) / 2, (5 / 12 + 0.75) / 2, (0.5 + 0.875) / 2, (0.5 + 1.0) / 2
    assert report.pass_at(results, "scope", 1) == pytest.approx({0: pass1, 1: pass1})
    assert report.pass_at(results, "scope", 2) == pytest.approx({0: pass2, 1: pass2})
    assert report.pass_at(results, "opd", 4) == pytest.approx({0: pass4})
    assert report.pass_at(results, "opd", 2, eval_set="a") == pytest.approx({0: 5 / 12})
    assert report.pass_area(results, "scope")[1] == pytest.approx((pass1 + pass2 + pass3 + pass4) / 4)
    assert report.pass_gain(results, "scope", 2, 4)[0] == pytest.approx(pass4 - pass2)
    with pytest.raises(ValueError, match="no results for variant 'kd'"):
        report.pass_at(results, "kd", 1)


def test_problem_scores_concatenate_sets_and_repeat_the_base_for_every_seed():
    results = {("base", 0): evaluation(), ("opd", 0): evaluation(), ("opd", 2): evaluation()}
    base = report.problem_scores(results, "base", [0, 1, 2])
    assert list(base) == [0, 1, 2]  # one evaluation, paired with every seed
    np.testing.assert_allclose(base[1], [0.5, 0.0, 0.25, 1.0])  # k = 1: each problem's accuracy
    assert base[1].mean() == pytest.approx(np.mean([evaluation().avg_at_k(s) for s in "ab"]))  # = Avg@k
    np.testing.assert_allclose(report.problem_scores(results, "base", [0], k=2)[0], [5 / 6, 0.0, 0.5, 1.0])
    assert list(report.problem_scores(results, "opd", [0, 1, 2])) == [0, 2]  # seed 1 was not run


def test_per_seed_reads_one_row_per_seed():
    df = pd.DataFrame([{"variant": "scope", "seed": s, "eval_set": e, "avg@k": 0.1 * s + (e == "average")}
                       for s in range(3) for e in ("chain2", "average")])
    assert report.per_seed(df, "scope") == pytest.approx({0: 1.0, 1: 1.1, 2: 1.2})
    assert report.per_seed(df, "scope", eval_set="chain2") == pytest.approx({0: 0.0, 1: 0.1, 2: 0.2})
    with pytest.raises(ValueError, match="no rows for variant 'opd'"):
        report.per_seed(df, "opd")
    with pytest.raises(ValueError, match="several 'average' rows for one seed"):
        report.per_seed(pd.concat([df, df]), "scope")


def test_history_change_and_mean_by_hand():
    steps = [{"step": i + 1, "entropy": float(i + 1)} for i in range(10)]  # 1..10
    gappy = [dict(r) for r in steps]
    gappy[0]["entropy"] = float("nan")  # a step that logged nothing for the metric
    histories = {("grpo", 0): steps, ("grpo", 1): gappy, ("opd", 0): steps[:3]}
    # window = int(0.2 * 10) = 2: mean(9, 10) - mean(1, 2) = 8; with step 1 missing, 9.5 - 2 = 7.5
    assert report.history_change(histories, "grpo", "entropy") == pytest.approx({0: 8.0, 1: 7.5})
    assert report.history_change(histories, "opd", "entropy") == pytest.approx({0: 2.0})  # window 1 of 3 steps
    assert report.history_mean(histories, "grpo", "entropy") == pytest.approx({0: 5.5, 1: 6.0})
    with pytest.raises(ValueError, match="no finite 'accuracy'"):
        report.history_mean(histories, "grpo", "accuracy")
    with pytest.raises(ValueError, match="no runs of variant 'kd'"):
        report.history_change(histories, "kd", "entropy")
    with pytest.raises(ValueError, match="fraction"):
        report.history_change(histories, "grpo", "entropy", fraction=0.7)


# --- verdict lines ------------------------------------------------------------------------


def test_compare_in_points_is_the_paired_t_rule():
    scope = {0: 0.60, 1: 0.58, 2: 0.62, 3: 0.59, 4: 0.61}
    opd = {0: 0.57, 1: 0.56, 2: 0.58, 3: 0.57, 4: 0.57}
    # d = 3, 2, 4, 2, 4 points: mean 3, sd 1, half-width 2.776 / sqrt(5) = 1.24
    line = report.compare("SCOPE − OPD Avg@16", scope, opd, "greater", "+5.54% relative")
    assert 3.0 - T_975_4 / math.sqrt(5) == pytest.approx(1.758, abs=1e-3)
    assert line == "- **reproduced** — SCOPE − OPD Avg@16: +3.0 points [+1.8, +4.2] (5 seeds; paper: +5.54% relative)"
    assert report.compare("x", opd, scope, "greater", "+1").startswith("- **contradicted** — x: -3.0 points")
    assert report.compare("x", opd, scope, "less", "-1").startswith("- **reproduced**")


def test_compare_relative_and_an_undefined_reference():
    # per seed 10% and 20%: mean 15, sd 7.071, half-width 12.706 * 7.071 / sqrt(2) = 63.53
    line = report.compare("SCOPE − OPD", {0: 110.0, 1: 120.0}, {0: 100.0, 1: 100.0}, "greater", "+5.54% relative",
                          relative=True)
    assert line == ("- **inconclusive** — SCOPE − OPD: +15.0% relative [-48.5, +78.5] "
                    "(2 seeds; paper: +5.54% relative)")
    zero = report.compare("SCOPE − OPD", {0: 0.2, 1: 0.3}, {0: 0.0, 1: 0.5}, "greater", "+5.54% relative", relative=True)
    assert zero.startswith("- **inconclusive** — SCOPE − OPD: n/a% relative (2 seeds; no interval: ")
    assert "the reference is 0 in seed(s) [0]" in zero and zero.endswith("paper: +5.54% relative)")


def test_one_seed_is_inconclusive_whatever_the_gap():
    line = report.compare("SCOPE − OPD", {0: 0.9}, {0: 0.1}, "greater", "+1")
    assert line.startswith("- **inconclusive** — SCOPE − OPD: +80.0 points (1 seed; no interval: 1 paired seed")


def test_compare_to_base_bootstraps_seeds_and_problems():
    base = EvalResult(k=4, correct={"a": np.repeat(np.arange(10)[:, None] < 5, 4, axis=1)})  # half the problems
    better = EvalResult(k=4, correct={"a": np.ones((10, 4), dtype=bool)})
    results = {("base", 0): base, **{("opd", s): better for s in range(3)}}
    line = report.compare_to_base("OPD − base Pass@1", results, "opd", [0, 1, 2], "greater", "+4.4 points")
    # every seed gains 50 points; a problem resample keeps the gain above 0 unless it draws <= 1 of the
    # five unsolved problems (P = 1.1%), so the 2.5% quantile is 20 points
    assert line == ("- **reproduced** — OPD − base Pass@1: +50.0 points [+20.0, +80.0] "
                    "(3 seeds × 10 problems, bootstrap; paper: +4.4 points)")
    same = report.compare_to_base("base − base", results, "base", [0, 1], "greater", "0")
    assert same.startswith("- **inconclusive** — base − base: +0.0 points [+0.0, +0.0]")


def test_interval_claim_has_the_three_outcomes():
    args = dict(evidence="one run, bootstrap over 40 rollouts")
    assert report.interval_claim("Q1 − Q4", 0.13, 0.05, 0.21, "greater", "+19.4 points", **args) == (
        "- **reproduced** — Q1 − Q4: +13.0 points [+5.0, +21.0] (one run, bootstrap over 40 rollouts; "
        "paper: +19.4 points)")
    assert report.interval_claim("x", -0.09, -0.13, -0.06, "greater", "+7.2", **args).startswith("- **contradicted**")
    assert report.interval_claim("x", 0.05, -0.02, 0.12, "greater", "+15.6", **args).startswith("- **inconclusive**")
    assert report.interval_claim("x", float("nan"), float("nan"), float("nan"), "greater", "+1", **args).startswith(
        "- **inconclusive** — x: n/a points (")


def test_check_lines_say_check_and_never_reproduced():
    assert report.check("ESS rises with tau", True, "0.9 < 1.0") == "- **check passed** — ESS rises with tau: 0.9 < 1.0"
    assert report.check("ESS rises with tau", False).startswith("- **check failed**")
    assert report.check("weights monotone", None, "no group with two rollouts") == (
        "- **check not run** — weights monotone: no group with two rollouts")


# --- recovery split (notebook 02) ---------------------------------------------------------


def rates_frame(prefix_has_error=True) -> pd.DataFrame:
    """8 incorrect rollouts (two per bucket) truncated at 0.2 and 0.8."""
    at_02 = {"recovery": [1, 1, 0.5, 0.5, 0.5, 0.5, 0, 0.5], "err": [0, 0, 0, 0, 0, 0, 1, 1]}
    at_08 = {"recovery": [0.5, 0, 0, 0, 0, 0, 0, 0], "err": [1] * 8}
    rows = []
    for ratio, cells in ((0.2, at_02), (0.8, at_08)):
        for rollout in range(8):
            rows.append({"rollout": rollout, "bucket": rollout // 2, "ratio": ratio,
                         "recovery": float(cells["recovery"][rollout]),
                         "prefix_has_error": bool(cells["err"][rollout]) if prefix_has_error else None})
    return pd.DataFrame(rows)


def test_recovery_conditions_by_hand():
    table = recovery_analysis.recovery_conditions(rates_frame(), n_boot=200).set_index(["condition", "ratio"])
    assert list(table.index.get_level_values(0).unique()) == list(recovery_analysis.RECOVERY_CONDITIONS)
    everything = table.loc[("all", 0.2)]
    assert (everything["n"], everything["share"]) == (8, 1.0)
    assert everything["recovery"] == pytest.approx(4.5 / 8)
    assert everything["gap"] == pytest.approx(1.0 - 0.25)  # Q1 (1, 1) minus Q4 (0, 0.5)
    holds = table.loc[("error in prefix", 0.2)]
    assert (holds["n"], holds["share"], holds["recovery"]) == (2, 0.25, pytest.approx(0.25))
    assert math.isnan(holds["gap"])  # only Q4 rollouts hold the error at 0.2
    before = table.loc[("error not yet in prefix", 0.2)]
    assert (before["n"], before["recovery"]) == (6, pytest.approx(4 / 6))
    assert table.loc[("error in prefix", 0.8), "gap"] == pytest.approx(0.25)
    empty = table.loc[("error not yet in prefix", 0.8)]
    assert empty["n"] == 0 and empty["share"] == 0 and math.isnan(empty["recovery"])
    assert everything["low"] <= everything["recovery"] <= everything["high"]


def test_recovery_conditions_without_a_diagnosis_keep_only_all():
    table = recovery_analysis.recovery_conditions(rates_frame(prefix_has_error=False), n_boot=50)
    assert set(table["condition"]) == {"all"} and len(table) == 2


def test_recovery_drop_is_paired_per_rollout():
    mean, low, high, n = recovery_analysis.recovery_drop(rates_frame(), n_boot=500)
    # per rollout 0.8 minus 0.2: -0.5, -1, -0.5, -0.5, -0.5, -0.5, 0, -0.5
    assert (mean, n) == (pytest.approx(-0.5), 8)
    assert low <= mean <= high < 0.0


# --- power record and the results page ----------------------------------------------------


def test_power_record_and_page(tmp_path):
    scope = {0: 0.60, 1: 0.58, 2: 0.62, 3: 0.59, 4: 0.61}
    opd = {0: 0.57, 1: 0.56, 2: 0.58, 3: 0.57, 4: 0.57}
    difference = verdict.paired_difference(scope, opd)
    record = report.save_power(difference, metric="Avg@16", reference_mean=0.57, paper_relative=5.54,
                               figures_dir=str(tmp_path))
    assert json.loads((tmp_path / report.POWER_FILE).read_text()) == record
    assert record["seeds"] == 5
    assert record["half_width_points"] == pytest.approx(100 * T_975_4 / math.sqrt(5) / 100, abs=1e-3)
    assert record["paper_effect_points"] == pytest.approx(5.54 / 100 * 57.0, abs=1e-3)
    text = report.power_text(record)
    assert "Table 1 pairs 5 seeds." in text and "half-width of **1.2 points**" in text
    assert "(+5.54% relative) would be +3.2 points" in text and "could be told from 0" in text

    (tmp_path / "table1_main_results.claims.md").write_text("- **inconclusive** — x\n")
    page = report.build_results_page(str(tmp_path)).read_text()
    assert page.index(verdict.RULE_TEXT) < page.index("**Power.**") < page.index("## Table 1")


def test_power_text_without_an_interval(tmp_path):
    one = verdict.paired_difference({0: 0.6}, {0: 0.5})
    record = report.save_power(one, metric="Avg@4", reference_mean=0.5, paper_relative=5.54, figures_dir=str(tmp_path))
    assert record["half_width_points"] is None and record["mean_points"] == pytest.approx(10.0)
    text = report.power_text(record)
    assert "Table 1 pairs 1 seed." in text and "has no interval (fewer than 2 paired seeds)" in text
