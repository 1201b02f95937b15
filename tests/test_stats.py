"""The statistics every verdict and figure uses (scope_lib/common/stats.py): Student t quantiles against
printed tables and closed forms, the t interval of a mean, and the percentile bootstraps."""

import math
import statistics

import numpy as np
import pytest

from scope_lib.common import stats

# df -> two-sided 95% critical value (upper 0.025 point), NIST table, 3 decimals
T_TABLE_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365,
              8: 2.306, 9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}
# df -> two-sided 99% critical value (upper 0.005 point)
T_TABLE_99 = {1: 63.657, 2: 9.925, 5: 4.032, 10: 3.169, 30: 2.750}


# --- t quantiles and mean_ci ------------------------------------------------------------


@pytest.mark.parametrize("df, expected", sorted(T_TABLE_95.items()))
def test_t_quantile_95_matches_table(df, expected):
    assert stats.t_quantile(0.95, df) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize("df, expected", sorted(T_TABLE_99.items()))
def test_t_quantile_99_matches_table(df, expected):
    assert stats.t_quantile(0.99, df) == pytest.approx(expected, abs=5e-4)


def test_t_quantile_identities():
    # df=1 is the Cauchy distribution: t = tan(pi * confidence / 2)
    for confidence in [0.5, 0.8, 0.95, 0.99]:
        cauchy = math.tan(math.pi * confidence / 2)
        assert stats.t_quantile(confidence, 1) == pytest.approx(cauchy, rel=1e-10)
    # df=2: F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so with u = 2q - 1, t = u sqrt(2 / (1 - u^2))
    for confidence in [0.5, 0.9, 0.95]:
        q = (1 + confidence) / 2  # one-sided probability
        alpha = 4 * q * (1 - q)
        expected = 2 * (q - 0.5) * math.sqrt(2 / alpha)
        assert stats.t_quantile(confidence, 2) == pytest.approx(expected, rel=1e-10)
    # large df tends to the normal quantile from above
    z = statistics.NormalDist().inv_cdf(0.975)
    t_large = stats.t_quantile(0.95, 4000)
    assert z < t_large < z + 1e-3


def test_t_quantile_matches_scipy_when_installed():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in [1, 2, 3, 7, 19, 60, 333]:
        for confidence in [0.5, 0.9, 0.95, 0.99]:
            expected = scipy_stats.t.ppf((1 + confidence) / 2, df)
            assert stats.t_quantile(confidence, df) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 11])
def test_mean_ci_matches_hand_computation(n):
    rng = np.random.default_rng(n)
    values = [float(v) for v in rng.normal(loc=rng.uniform(-5, 5), scale=rng.uniform(0.1, 3), size=n)]
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half_width = T_TABLE_95[n - 1] * sd / math.sqrt(n)
    got_mean, low, high = stats.mean_ci(values)
    assert got_mean == pytest.approx(mean, rel=1e-12, abs=1e-12)
    # the table has 3 decimals, so the width agrees to ~5e-4 relative of t
    assert low == pytest.approx(mean - half_width, abs=3e-4 * sd)
    assert high == pytest.approx(mean + half_width, abs=3e-4 * sd)
    assert high - mean == pytest.approx(mean - low, rel=1e-12)


def test_mean_ci_edge_cases():
    mean, low, high = stats.mean_ci([0.42])
    assert mean == 0.42 and math.isnan(low) and math.isnan(high)
    assert stats.mean_ci([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3, 0.3))
    # wider confidence, wider interval
    values = np.random.default_rng(6).random(6)
    _, low90, high90 = stats.mean_ci(values, confidence=0.90)
    _, low99, high99 = stats.mean_ci(values, confidence=0.99)
    assert low99 < low90 and high99 > high90
    for bad in [[], [1.0, math.nan]]:
        with pytest.raises(ValueError, match="values"):
            stats.mean_ci(bad)
    with pytest.raises(ValueError, match="confidence"):
        stats.mean_ci([1.0, 2.0], confidence=95)


# --- percentile bootstrap ---------------------------------------------------------------


def test_bootstrap_mean_ci_is_the_percentile_interval_of_resampled_means():
    x = np.random.default_rng(3).normal(size=40)
    draws = np.random.default_rng(11).integers(0, x.size, size=(500, x.size))
    means = sorted(sum(x[i] for i in row) / x.size for row in draws)
    # linear interpolation between order statistics, as numpy's default quantile
    def quantile(q):
        position = q * (len(means) - 1)
        below = math.floor(position)
        return means[below] + (position - below) * (means[min(below + 1, len(means) - 1)] - means[below])
    mean, low, high = stats.bootstrap_mean_ci(x, n_boot=500, seed=11, confidence=0.9)
    assert mean == pytest.approx(x.mean(), rel=1e-12)
    assert (low, high) == pytest.approx((quantile(0.05), quantile(0.95)), rel=1e-9, abs=1e-12)
    assert stats.bootstrap_errorbar(n_boot=500, seed=11, confidence=0.9)(x) == (low, high)


def test_t_half_width_is_the_half_width_of_mean_ci():
    values = np.random.default_rng(5).random(7)
    mean, low, high = stats.mean_ci(values, confidence=0.9)
    assert stats.t_half_width(float(values.std(ddof=1)), values.size, 0.9) == pytest.approx(high - mean, rel=1e-12)
