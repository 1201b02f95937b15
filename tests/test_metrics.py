"""Avg@k and Pass@k against the exact combinatorial formula."""

from math import comb

import numpy as np
import pytest
from hypothesis import given, strategies as st

from scope_lib.metrics import (
    avg_at_k,
    bootstrap_best_of_k,
    mean_pass_at_k,
    pass_at_k,
    pass_at_k_curve,
)


@st.composite
def counts(draw):
    n = draw(st.integers(1, 64))
    c = draw(st.integers(0, n))
    k = draw(st.integers(1, n))
    return n, c, k


@given(counts())
def test_pass_at_k_matches_exact_combinatorics(nck):
    n, c, k = nck
    exact = 1 - comb(n - c, k) / comb(n, k)  # comb(a, b) = 0 when b > a, i.e. n - c < k
    assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


def test_pass_at_k_edge_cases():
    assert pass_at_k(8, 0, 1) == 0.0
    assert pass_at_k(8, 8, 8) == 1.0
    assert pass_at_k(8, 3, 6) == 1.0  # n - c = 5 < k: every draw of 6 holds a correct one
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)
    assert pass_at_k(1000, 1, 1) == pytest.approx(1e-3)


@pytest.mark.parametrize("n,c,k,name", [(0, 0, 1, "n"), (4, 5, 1, "c"), (4, 1, 5, "k"), (4, 1, 0, "k"), (4, 1.5, 1, "c")])
def test_pass_at_k_rejects_bad_counts(n, c, k, name):
    with pytest.raises(ValueError, match=name):
        pass_at_k(n, c, k)


def test_avg_and_pass_curve_on_random_grades():
    rng = np.random.default_rng(0)
    grades = rng.random((37, 8)) < rng.random((37, 1))
    assert avg_at_k(grades) == pytest.approx(grades.sum() / grades.size)
    counts_ = grades.sum(axis=1)
    curve = pass_at_k_curve(counts_, 8)
    assert list(curve) == list(range(1, 9))
    # Pass@1 equals Avg@k; Pass@n is the fraction of problems with any correct sample.
    assert curve[1] == pytest.approx(avg_at_k(grades))
    assert curve[8] == pytest.approx(np.mean(counts_ > 0))
    assert all(curve[k] <= curve[k + 1] + 1e-12 for k in range(1, 8))
    assert mean_pass_at_k(counts_, 8, 3) == pytest.approx(curve[3])


def test_bootstrap_best_of_k_is_biased_below_unbiased_estimator():
    rng = np.random.default_rng(1)
    grades = rng.random((50, 16)) < 0.2
    counts_ = grades.sum(axis=1)
    unbiased = mean_pass_at_k(counts_, 16, 4)
    boot = bootstrap_best_of_k(grades, 4, num_bootstrap=4000, seed=int(rng.integers(1 << 30)))
    # With replacement, P(any of k correct) = 1 - (1 - c/n)^k <= the without-replacement value.
    expected = np.mean(1 - (1 - counts_ / 16) ** 4)
    assert boot == pytest.approx(expected, abs=0.02)
    assert boot <= unbiased + 0.02
    assert bootstrap_best_of_k(np.ones((3, 4), bool), 2) == 1.0
    assert bootstrap_best_of_k(np.zeros((3, 4), bool), 4) == 0.0
