"""Evaluation metrics of the paper (Table 4): Avg@k and Pass@k.

`pass_at_k` is the unbiased estimator of Chen et al. (2021), `1 - C(n-c, k) / C(n, k)`, the
probability that at least one of k samples drawn without replacement from the n generated
ones is correct. The authors' released code reports a different quantity under the same
name, a bootstrap best-of-k over the n samples; it is offered here as
`bootstrap_best_of_k` so both can be compared (docs/DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check_counts(n: int, c: int, k: int) -> None:
    for name, value in (("n", n), ("c", c), ("k", k)):
        if int(value) != value:
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if n < 1:
        raise ValueError(f"n (samples per problem) must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c (correct samples) must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k for one problem with `c` correct answers among `n` samples.

    Computed as the product `prod_{i=n-c+1}^{n} (1 - k/i)` = C(n-c, k)/C(n, k), which is
    numerically stable for large n; it is exactly 1 when n - c < k.
    """
    _check_counts(n, c, k)
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def avg_at_k(correct: Sequence[Sequence[bool]] | np.ndarray) -> float:
    """Avg@k: the mean accuracy over all problems and all k samples per problem.

    `correct` is a (problems, k) boolean array of per-sample grades.
    """
    grades = np.asarray(correct, dtype=np.float64)
    if grades.ndim != 2 or grades.size == 0:
        raise ValueError(f"correct must be a non-empty (problems, k) array, got shape {grades.shape}")
    return float(grades.mean())


def mean_pass_at_k(correct_counts: Sequence[int], n: int, k: int) -> float:
    """Pass@k averaged over problems, from each problem's number of correct samples."""
    if len(correct_counts) == 0:
        raise ValueError("correct_counts must hold at least one problem")
    return float(np.mean([pass_at_k(n, int(c), k) for c in correct_counts]))


def pass_at_k_curve(correct_counts: Sequence[int], n: int, ks: Sequence[int] | None = None) -> dict[int, float]:
    """Mean Pass@k over problems for each k in `ks` (default 1..n): the paper's Fig. 4 curve."""
    ks = range(1, n + 1) if ks is None else ks
    return {int(k): mean_pass_at_k(correct_counts, n, int(k)) for k in ks}


def bootstrap_best_of_k(
    correct: Sequence[Sequence[bool]] | np.ndarray,
    k: int,
    *,
    num_bootstrap: int = 1000,
    seed: int = 0,
) -> float:
    """The released code's "pass@k": a bootstrap estimate of best-of-k.

    For each problem, draw `k` of its n samples (with replacement, as the released code's
    bootstrap does) `num_bootstrap` times and record whether any is correct; average over
    draws and problems. It is biased low against `pass_at_k` (it can redraw the same wrong
    sample), which is why the project reports the unbiased estimator by default.
    """
    grades = np.asarray(correct, dtype=bool)
    if grades.ndim != 2 or grades.size == 0:
        raise ValueError(f"correct must be a non-empty (problems, n) array, got shape {grades.shape}")
    n = grades.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, n, size=(grades.shape[0], num_bootstrap, k))
    drawn = np.take_along_axis(grades[:, None, :], picks, axis=2)  # (problems, bootstrap, k)
    return float(drawn.any(axis=2).mean())
