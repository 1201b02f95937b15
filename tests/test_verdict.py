"""The verdict rule against hand-computed intervals, each of its outcomes, and float64 references."""

import math

import numpy as np
import pandas as pd
import pytest

from scope_lib.notebook import verdict as v

# Two-sided 95% Student t critical values t_{0.975, df}, from printed tables (df = 1..11).
T_975 = {1: 12.706204736, 2: 4.302652730, 3: 3.182446305, 4: 2.776445105, 5: 2.570581836,
         6: 2.446911851, 7: 2.364624252, 8: 2.306004135, 9: 2.262157163, 10: 2.228138852,
         11: 2.200985160}


# --- Student t on paired differences: hand computations ----------------------------------


def test_five_seeds_hand_computed_interval_is_reproduced():
    scope = {0: 60.0, 1: 58.0, 2: 62.0, 3: 59.0, 4: 61.0}
    opd = {0: 57.0, 1: 56.0, 2: 58.0, 3: 57.0, 4: 57.0}
    diff = v.paired_difference(scope, opd)
    # d = 3, 2, 4, 2, 4: mean 3, squared deviations 0+1+1+1+1 = 4, sd = sqrt(4/4) = 1
    half_width = 2.7764451 * 1.0 / math.sqrt(5)  # = 1.24166
    assert diff.per_seed == {0: 3.0, 1: 2.0, 2: 4.0, 3: 2.0, 4: 4.0}
    assert diff.n == 5 and diff.method == "t" and diff.reason is None
    assert diff.mean == pytest.approx(3.0)
    assert diff.half_width == pytest.approx(half_width, rel=1e-6)
    assert (diff.low, diff.high) == pytest.approx((3.0 - half_width, 3.0 + half_width), rel=1e-6)
    assert v.verdict(diff, "greater") == "reproduced"
    assert v.verdict(diff, "less") == "contradicted"


def test_swapped_runs_contradict_the_claim():
    scope = {0: 57.0, 1: 56.0, 2: 58.0, 3: 57.0, 4: 57.0}
    opd = {0: 60.0, 1: 58.0, 2: 62.0, 3: 59.0, 4: 61.0}
    diff = v.paired_difference(scope, opd)
    assert diff.mean == pytest.approx(-3.0)
    assert diff.high == pytest.approx(-3.0 + 2.7764451 / math.sqrt(5), rel=1e-6)
    assert v.verdict(diff, "greater") == "contradicted"
    assert v.verdict(diff, "less") == "reproduced"


def test_noisy_differences_are_inconclusive():
    a = {0: 3.0, 1: -2.0, 2: 4.0, 3: -1.0, 4: 1.0}
    b = dict.fromkeys(range(5), 0.0)
    diff = v.paired_difference(a, b)
    # mean 1, squared deviations 4+9+9+4+0 = 26, sd = sqrt(6.5)
    half_width = 2.7764451 * math.sqrt(6.5) / math.sqrt(5)  # = 3.1656
    assert (diff.low, diff.high) == pytest.approx((1.0 - half_width, 1.0 + half_width), rel=1e-6)
    assert diff.low < 0 < diff.high
    assert v.verdict(diff, "greater") == "inconclusive"
    assert v.verdict(diff, "less") == "inconclusive"


def test_three_seeds_all_positive_can_still_be_inconclusive():
    # d = 1, 2, 3: mean 2, sd 1; with df = 2 the interval 2 -/+ 4.3027/sqrt(3) reaches below 0.
    diff = v.paired_difference({0: 11.0, 1: 12.0, 2: 13.0}, {0: 10.0, 1: 10.0, 2: 10.0})
    half_width = 4.3026527 / math.sqrt(3)  # = 2.48414
    assert (diff.low, diff.high) == pytest.approx((2.0 - half_width, 2.0 + half_width), rel=1e-6)
    assert v.verdict(diff, "greater") == "inconclusive"


def test_direction_less_claim():
    # The paper claims A < B (e.g. SCOPE's step time is below a baseline's): d = -0.5, -0.7, -0.6.
    diff = v.paired_difference({0: 1.5, 1: 1.3, 2: 1.4}, {0: 2.0, 1: 2.0, 2: 2.0})
    half_width = 4.3026527 * 0.1 / math.sqrt(3)
    assert diff.mean == pytest.approx(-0.6)
    assert diff.high == pytest.approx(-0.6 + half_width, rel=1e-6)
    assert v.verdict(diff, "less") == "reproduced"
    assert v.verdict(diff, "greater") == "contradicted"
    with pytest.raises(ValueError, match="direction.*'lower'"):
        v.verdict(diff, "lower")


def test_zero_difference_is_inconclusive_even_with_a_collapsed_interval():
    diff = v.paired_difference({0: 0.5, 1: 0.5}, {0: 0.5, 1: 0.5})
    assert (diff.low, diff.high) == (0.0, 0.0)
    assert v.verdict(diff, "greater") == "inconclusive"


def test_fewer_than_two_paired_seeds_is_inconclusive_with_a_reason():
    one = v.paired_difference({0: 0.9, 1: 0.8}, {0: 0.1, 2: 0.1})
    assert one.n == 1 and one.mean == pytest.approx(0.8)
    assert math.isnan(one.low) and math.isnan(one.high)
    assert "1 paired seed" in one.reason and "at least 2" in one.reason
    assert v.verdict(one, "greater") == "inconclusive"  # a huge single-seed gap proves nothing
    line = v.claim_line("A − B", one, "greater", "+5")
    assert line.startswith("- **inconclusive** — A − B: +0.8 (1 seed; no interval: 1 paired seed")
    none = v.paired_difference({"0": 1.0, "1": 2.0}, {0: 1.0, 1: 2.0})  # str vs int seeds never pair
    assert none.n == 0 and math.isnan(none.mean)
    assert "only in a ['0', '1']" in none.reason and "only in b [0, 1]" in none.reason
    assert v.verdict(none, "greater") == "inconclusive"


def test_unpaired_seeds_are_dropped_and_named():
    a = {0: 5.0, 1: 6.0, 2: 7.0, 5: 100.0}
    b = {2: 5.0, 1: 4.0, 0: 4.0, 7: -100.0}
    diff = v.paired_difference(a, b)
    assert list(diff.per_seed) == [0, 1, 2]  # seed order, whatever the input order
    assert diff.dropped_a == (5,) and diff.dropped_b == (7,)
    reference = v.paired_difference({0: 5.0, 1: 6.0, 2: 7.0}, {0: 4.0, 1: 4.0, 2: 5.0})
    assert (diff.mean, diff.low, diff.high) == (reference.mean, reference.low, reference.high)
    assert "unpaired seeds dropped: [5, 7]" in v.claim_line("A − B", diff, "greater", "+1")


def test_bad_inputs_name_the_input():
    with pytest.raises(ValueError, match=r"a\[1\].*finite"):
        v.paired_difference({0: 1.0, 1: float("nan")}, {0: 1.0, 1: 1.0})
    with pytest.raises(ValueError, match="confidence"):
        v.paired_difference({0: 1.0, 1: 2.0}, {0: 1.0, 1: 1.0}, confidence=95)
    with pytest.raises(TypeError, match="b: expected a mapping"):
        v.paired_difference({0: 1.0}, [1.0])


# --- relative differences -----------------------------------------------------------------


def test_relative_difference_hand_computed():
    diff = v.paired_relative_difference({0: 0.6, 1: 0.66}, {0: 0.5, 1: 0.6})
    # per seed 100 (a - b) / b = 20, 10: mean 15, sd = sqrt(50), df = 1
    assert diff.per_seed == pytest.approx({0: 20.0, 1: 10.0})
    assert diff.relative
    half_width = 12.7062047 * math.sqrt(50) / math.sqrt(2)
    assert (diff.low, diff.high) == pytest.approx((15 - half_width, 15 + half_width), rel=1e-6)
    # It is the mean of per-seed ratios, not the ratio of means (which would be 100 * 0.16 / 1.1).
    assert diff.mean != pytest.approx(100 * 0.16 / 1.1)
    line = v.claim_line("SCOPE vs OPD Avg@16", diff, "greater", "+5.5% relative")
    assert line == ("- **inconclusive** — SCOPE vs OPD Avg@16: +15.0% relative "
                    f"[{15 - half_width:+.1f}, {15 + half_width:+.1f}] (2 seeds; paper: +5.5% relative)")
    with pytest.raises(ValueError, match=r"b\[1\].*0"):
        v.paired_relative_difference({0: 0.6, 1: 0.1}, {0: 0.5, 1: 0.0})


# --- fresh random inputs against a float64 reference ----------------------------------------


@pytest.mark.parametrize("trial", range(8))
def test_t_interval_matches_float64_reference_on_random_inputs(trial):
    rng = np.random.default_rng(0)
    n = int(rng.integers(2, 13))
    a = rng.normal(0.5, 0.1, n).astype(np.float32)  # float32 in: the interval is computed in float64
    b = rng.normal(0.45, 0.1, n).astype(np.float32)
    seeds = rng.permutation(100)[:n].tolist()
    diff = v.paired_difference(dict(zip(seeds, a)), dict(zip(seeds, b)))
    d = a.astype(np.float64) - b.astype(np.float64)
    half_width = T_975[n - 1] * math.sqrt(((d - d.mean()) ** 2).sum() / (n - 1)) / math.sqrt(n)
    assert diff.mean == pytest.approx(d.mean(), rel=1e-12, abs=1e-15)
    assert diff.half_width == pytest.approx(half_width, rel=1e-8)
    # The table's 10 digits bound the agreement: |error| <= half_width * 1e-9.
    assert diff.low == pytest.approx(d.mean() - half_width, abs=1e-9)
    assert diff.high == pytest.approx(d.mean() + half_width, abs=1e-9)
    low, high = d.mean() - half_width, d.mean() + half_width
    if min(abs(low), abs(high)) > 1e-8:  # a bound within table precision of 0 could go either way
        expected = "reproduced" if low > 0 else "contradicted" if high < 0 else "inconclusive"
        assert v.verdict(diff, "greater") == expected


def test_t_interval_covers_a_zero_effect_95_percent_of_the_time():
    # 4000 paired experiments of 5 seeds with no true effect: about 5% (sd 0.34%) say "reproduced"
    # or "contradicted". A normal quantile instead of t would give about 12%.
    rng = np.random.default_rng(1234)
    outcomes = []
    for row in rng.normal(size=(4000, 5)):
        outcomes.append(v.verdict(v.paired_difference(dict(enumerate(row)), dict.fromkeys(range(5), 0.0)), "greater"))
    wrong = np.mean([o != "inconclusive" for o in outcomes])
    assert 0.04 < wrong < 0.06
    assert outcomes.count("reproduced") == pytest.approx(outcomes.count("contradicted"), rel=0.35)


# --- the tidy-frame entry point -----------------------------------------------------------


def test_frame_version_equals_the_mapping_version():
    frame = pd.DataFrame(
        [{"variant": "scope", "seed": s, "avg@k": x} for s, x in enumerate([0.60, 0.58, 0.62, 0.59])]
        + [{"variant": "opd", "seed": s, "avg@k": x} for s, x in enumerate([0.57, 0.56, 0.58, 0.57, 0.50])]
    )
    diff = v.paired_difference_from_frame(frame, "scope", "opd", value="avg@k")
    reference = v.paired_difference({0: 0.60, 1: 0.58, 2: 0.62, 3: 0.59}, {0: 0.57, 1: 0.56, 2: 0.58, 3: 0.57})
    assert (diff.mean, diff.low, diff.high) == pytest.approx((reference.mean, reference.low, reference.high))
    assert diff.dropped_b == (4,)
    relative = v.paired_difference_from_frame(frame, "scope", "opd", value="avg@k", relative=True)
    assert relative.per_seed[0] == pytest.approx(100 * 0.03 / 0.57)
    with pytest.raises(ValueError, match="no column 'pass@k'"):
        v.paired_difference_from_frame(frame, "scope", "opd", value="pass@k")
    doubled = pd.concat([frame, frame.assign(eval_set="other")])
    with pytest.raises(ValueError, match="variant 'scope' has several rows for seed"):
        v.paired_difference_from_frame(doubled, "scope", "opd", value="avg@k")


# --- bootstrap over seeds and problems ------------------------------------------------------


def _bootstrap_reference(a, b, seeds, *, num_resamples, rng_seed, confidence=0.95, relative=False):
    """The documented resampling, one resample at a time in plain float64 loops."""
    rng = np.random.default_rng(rng_seed)
    n, problems = len(seeds), len(a[seeds[0]])
    seed_draws = rng.integers(0, n, size=(num_resamples, n))
    problem_draws = rng.integers(0, problems, size=(num_resamples, problems))
    stats = []
    for r in range(num_resamples):
        values = []
        for i in seed_draws[r]:
            a_mean = np.mean(np.asarray(a[seeds[i]], dtype=np.float64)[problem_draws[r]])
            b_mean = np.mean(np.asarray(b[seeds[i]], dtype=np.float64)[problem_draws[r]])
            values.append(100 * (a_mean - b_mean) / b_mean if relative else a_mean - b_mean)
        stats.append(np.mean(values))
    return np.quantile(stats, [(1 - confidence) / 2, (1 + confidence) / 2])


@pytest.mark.parametrize("relative", [False, True])
def test_bootstrap_matches_loop_reference_on_random_inputs(relative):
    rng = np.random.default_rng(1)
    seeds = [0, 1, 2, 3, 4]
    problems = int(rng.integers(3, 40))
    a = {s: rng.random(problems) * 0.5 + 0.4 for s in seeds}
    b = {s: rng.random(problems) * 0.5 + 0.3 for s in seeds}
    diff = v.bootstrap_difference(a, b, num_resamples=300, seed=7, relative=relative)
    low, high = _bootstrap_reference(a, b, seeds, num_resamples=300, rng_seed=7, relative=relative)
    assert (diff.low, diff.high) == pytest.approx((low, high), rel=1e-9)
    per_seed = [np.mean(a[s]) - np.mean(b[s]) for s in seeds]
    if relative:
        per_seed = [100 * d / np.mean(b[s]) for d, s in zip(per_seed, seeds)]
    assert diff.mean == pytest.approx(np.mean(per_seed), rel=1e-12)
    assert diff.method == "bootstrap" and diff.problems == problems and diff.relative == relative


def test_bootstrap_constant_differences_collapse_the_interval():
    rng = np.random.default_rng(2)
    b = {s: rng.random(50) for s in range(5)}
    a = {s: scores + 0.03 for s, scores in b.items()}
    diff = v.bootstrap_difference(a, b, num_resamples=500)
    assert (diff.mean, diff.low, diff.high) == pytest.approx((0.03, 0.03, 0.03), abs=1e-12)
    assert v.verdict(diff, "greater") == "reproduced"
    same = v.bootstrap_difference(b, b, num_resamples=500)
    assert (same.low, same.high) == (0.0, 0.0)
    assert v.verdict(same, "greater") == "inconclusive"


def test_bootstrap_huge_noise_is_inconclusive_and_point_estimate_matches_t_version():
    rng = np.random.default_rng(3)
    a = {s: rng.normal(0.0, 50.0, 30) + 0.01 for s in range(5)}
    b = {s: rng.normal(0.0, 50.0, 30) for s in range(5)}
    diff = v.bootstrap_difference(a, b, num_resamples=1000)
    assert diff.low < 0 < diff.high
    assert v.verdict(diff, "greater") == "inconclusive"
    t_diff = v.paired_difference({s: x.mean() for s, x in a.items()}, {s: x.mean() for s, x in b.items()})
    assert diff.mean == pytest.approx(t_diff.mean, rel=1e-12)
    assert diff.per_seed == pytest.approx(t_diff.per_seed, rel=1e-12)


def test_bootstrap_is_reproducible_and_reports_pairing():
    rng = np.random.default_rng(3)
    a = {s: rng.random(20) for s in range(4)}
    b = {s: rng.random(20) for s in (0, 1, 2, 9)}
    first = v.bootstrap_difference(a, b, num_resamples=200, seed=11)
    assert first == v.bootstrap_difference(a, b, num_resamples=200, seed=11)
    other = v.bootstrap_difference(a, b, num_resamples=200, seed=12)
    assert other.mean == first.mean and (other.low, other.high) != (first.low, first.high)
    assert first.dropped_a == (3,) and first.dropped_b == (9,) and first.n == 3
    assert "(3 seeds × 20 problems, bootstrap; unpaired seeds dropped: [3, 9]; paper: +1)" in v.claim_line(
        "A − B", first, "greater", "+1")


def test_bootstrap_single_seed_and_bad_shapes():
    one = v.bootstrap_difference({0: np.ones(4)}, {0: np.zeros(4)})
    assert one.mean == 1.0 and math.isnan(one.low) and "1 paired seed" in one.reason
    assert v.verdict(one, "greater") == "inconclusive"
    with pytest.raises(ValueError, match=r"a_scores\[1\]: 3 problems, but seed 0 has 4"):
        v.bootstrap_difference({0: np.ones(4), 1: np.ones(3)}, {0: np.ones(4), 1: np.ones(4)})
    with pytest.raises(ValueError, match="b_scores: 5 problems per seed, but a_scores has 4"):
        v.bootstrap_difference({0: np.ones(4), 1: np.ones(4)}, {0: np.ones(5), 1: np.ones(5)})
    with pytest.raises(ValueError, match=r"b_scores: mean score 0 for seed\(s\) \[1\]"):
        v.bootstrap_difference({0: np.ones(4), 1: np.ones(4)}, {0: np.ones(4), 1: np.zeros(4)}, relative=True)
    with pytest.raises(ValueError, match=r"a_scores\[0\]: expected a non-empty 1-D"):
        v.bootstrap_difference({0: np.ones((2, 2)), 1: np.ones(4)}, {0: np.ones(4), 1: np.ones(4)})


# --- results-page lines ------------------------------------------------------------------


def test_claim_line_format():
    diff = v.paired_difference({0: 0.60, 1: 0.58, 2: 0.62, 3: 0.59, 4: 0.61},
                               {0: 0.57, 1: 0.56, 2: 0.58, 3: 0.57, 4: 0.57})
    line = v.claim_line("SCOPE − OPD Avg@16", diff, "greater", "+5.5% relative", scale=100, unit=" points")
    assert line == "- **reproduced** — SCOPE − OPD Avg@16: +3.0 points [+1.8, +4.2] (5 seeds; paper: +5.5% relative)"
    assert v.claim_line("x", diff, "less", "-2", digits=2).startswith("- **contradicted** — x: +0.03 [+0.02, +0.04]")
    with pytest.raises(ValueError, match="paper_effect"):
        v.claim_line("x", diff, "greater", "")


def test_check_line_is_not_a_verdict():
    assert v.check_line("weights are monotone in PPL", True, "all 40 groups") == \
        "- **check passed** — weights are monotone in PPL: all 40 groups"
    assert v.check_line("weights sum to 1", np.bool_(False)) == "- **check failed** — weights sum to 1"
    with pytest.raises(TypeError, match="passed"):
        v.check_line("weights sum to 1", None)


def test_rule_text_states_the_three_outcomes():
    for word in ("same seed", "95%", "**reproduced**", "**contradicted**", "**inconclusive**",
                 "fewer than 2 paired seeds", "paper's effect", "**check**"):
        assert word in v.RULE_TEXT
