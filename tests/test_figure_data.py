"""The long per-seed frames the seaborn figures draw from (scope_lib.notebook.figure_data).

Pass@k is recomputed by hand in float64 from the binomial formula 1 - C(n-c, k) / C(n, k)
on fresh random grades; the seed means are checked against the report tables
(`report.pass_curves`, `report.step_curves`) that give the same quantities.
"""

import math

import numpy as np
import pandas as pd
import pytest

from scope_lib.notebook import figure_data, report
from scope_lib.common import plotting
from scope_lib.evaluate import EvalResult


def _random_results(rng, variants, seeds, sets=("chain2", "chain3"), k=6, problems=9):
    return {(v, s): EvalResult(k=k, correct={name: rng.random((problems, k)) < rng.uniform(0.1, 0.9) for name in sets})
            for v in variants for s in seeds}


def _hand_pass_at_k(correct: np.ndarray, k: int) -> float:
    n = correct.shape[1]
    return float(np.mean([1.0 - math.comb(n - int(c), k) / math.comb(n, k) for c in correct.sum(axis=1)]))


def test_pass_curves_long_matches_the_binomial_formula_per_seed_and_set():
    rng = np.random.default_rng(0)
    results = _random_results(rng, ["scope", "grpo"], [0, 1, 2])
    long = figure_data.pass_curves_long(results, ["scope", "grpo"])
    assert len(long) == 2 * 3 * (2 + 1) * 6  # variants x seeds x (sets + average) x k
    for (variant, seed), result in results.items():
        for name, correct in result.correct.items():
            rows = long[(long.variant == variant) & (long.seed == seed) & (long.eval_set == name)]
            assert rows.k.tolist() == list(range(1, 7))
            expected = [_hand_pass_at_k(correct, k) for k in range(1, 7)]
            np.testing.assert_allclose(rows["pass@k"], expected, rtol=0, atol=1e-12)
        average = long[(long.variant == variant) & (long.seed == seed) & (long.eval_set == "average")]
        by_set = [[_hand_pass_at_k(c, k) for k in range(1, 7)] for c in result.correct.values()]
        np.testing.assert_allclose(average["pass@k"], np.mean(by_set, axis=0), rtol=0, atol=1e-12)


def test_pass_curves_long_seed_means_are_report_pass_curves():
    rng = np.random.default_rng(1)
    results = _random_results(rng, ["opd", "kd"], [3, 5, 8, 13])
    long = figure_data.pass_curves_long(results, ["opd", "kd"])
    for variant in ["opd", "kd"]:
        for eval_set in [None, "chain3"]:
            table = report.pass_curves(results, variant, eval_set)
            part = long[(long.variant == variant) & (long.eval_set == (eval_set or "average"))]
            means = part.groupby("k")["pass@k"].mean()
            np.testing.assert_allclose(means.loc[table.k], table["pass@k"], rtol=0, atol=1e-12)


def test_pass_curves_long_without_average_and_unknown_variant():
    rng = np.random.default_rng(2)
    results = _random_results(rng, ["scope"], [0])
    long = figure_data.pass_curves_long(results, ["scope"], average=False)
    assert set(long.eval_set) == {"chain2", "chain3"}
    with pytest.raises(ValueError, match="'kd'.*scope"):
        figure_data.pass_curves_long(results, ["scope", "kd"])


def _histories(rng, variants, seeds, steps, metric):
    return {(v, s): [{"step": i + 1, metric: float(rng.random()), "loss": 1.0} for i in range(steps)]
            for v in variants for s in seeds}


def test_history_long_seed_means_are_report_step_curves():
    rng = np.random.default_rng(3)
    histories = _histories(rng, ["scope", "scope_tau0.5"], [0, 1, 2], 7, "teacher_w_ess_frac")
    long = figure_data.history_long(histories, "teacher_w_ess_frac")
    assert len(long) == 2 * 3 * 7
    table = report.step_curves(histories, "teacher_w_ess_frac")
    means = long.groupby(["variant", "step"])["teacher_w_ess_frac"].mean()
    np.testing.assert_allclose(means.loc[list(zip(table.variant, table.step))], table["teacher_w_ess_frac"],
                               rtol=0, atol=1e-12)


def test_history_long_leaves_out_missing_and_nan_steps_and_names_an_unlogged_metric():
    histories = {("scope", 0): [{"step": 1, "ess": 0.5}, {"step": 2, "ess": float("nan")}, {"step": 3}],
                 ("scope", 1): [{"step": 1, "ess": 0.25}, {"step": 2, "ess": 0.75}]}
    long = figure_data.history_long(histories, "ess")
    assert list(zip(long.seed, long.step, long.ess)) == [(0, 1, 0.5), (1, 1, 0.25), (1, 2, 0.75)]
    with pytest.raises(ValueError, match="'ent'.*'ess'"):
        figure_data.history_long(histories, "ent")


def test_step_times_reads_every_timer_and_counts_rollouts():
    rng = np.random.default_rng(4)
    timers = ["generation", "teacher_scoring", "step"]
    histories = {}
    for variant, seed in [("grpo", 0), ("scope", 0), ("scope", 1)]:
        histories[variant, seed] = [{"step": i, "n_correct": int(rng.integers(0, 8)), "n_incorrect": int(rng.integers(0, 8)),
                                     **{f"time/{t}": float(rng.random()) for t in timers}} for i in range(4)]
    histories["grpo", 0][0].pop("n_incorrect")  # a record without a count adds 0
    frame = figure_data.step_times(histories, timers)
    assert list(frame.columns) == ["variant", "seed", "rollouts", *timers]
    records = [r for h in histories.values() for r in h]
    assert frame.rollouts.tolist() == [r.get("n_correct", 0) + r.get("n_incorrect", 0) for r in records]
    for t in timers:
        assert frame[t].tolist() == [r[f"time/{t}"] for r in records]
    pd.testing.assert_series_equal(frame.groupby("variant")["step"].mean(),
                                   pd.Series({v: np.mean([r["time/step"] for (w, _), h in histories.items() if w == v
                                                          for r in h]) for v in ["grpo", "scope"]}, name="step"),
                                   check_names=False, check_index_type=False, rtol=0, atol=1e-12)


def test_step_times_names_the_run_missing_a_timer():
    histories = {("opd", 2): [{"step": 5, "time/step": 1.0}]}
    with pytest.raises(ValueError, match=r"\('opd', 2\) step 5.*generation"):
        figure_data.step_times(histories, ["generation", "step"])


def test_t_interval_within_is_mean_ci_clipped_to_the_range():
    from scope_lib.common.plotting import mean_ci

    rng = np.random.default_rng(5)
    values = np.array([100.0, *(100.0 - rng.uniform(1, 5, size=2))])  # three seeds, one at the top of the range
    _, low, high = mean_ci(values)
    # max - mean <= s (n - 1) / sqrt(n) = 1.15 s < t s / sqrt(n) = 2.48 s: the interval always leaves the range
    assert high > 100 and 0 < low
    assert plotting.t_interval_within(0, 100)(values) == (max(low, 0.0), 100.0)
    wide = plotting.t_interval_within(-1e9, 1e9)(values)
    mean = float(np.mean(values))
    t = 0.95 * math.sqrt(2 / (1 - 0.95 ** 2))  # df = 2 in closed form: P(|T| < t) = t / sqrt(2 + t^2)
    half = t * float(np.std(values, ddof=1)) / math.sqrt(3)
    np.testing.assert_allclose(wide, (mean - half, mean + half), rtol=1e-12)
    assert all(math.isnan(x) for x in plotting.t_interval_within(0, 1)([0.5]))  # one seed: no interval
    with pytest.raises(ValueError, match="lowest < highest"):
        plotting.t_interval_within(1, 1)
