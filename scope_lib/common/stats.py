"""Statistics the results are judged with: Student t quantiles and intervals, paired
differences over seeds, and percentile bootstraps. numpy only (no scipy), and nothing from
the rest of the package, so every layer above may use it.

- `t_quantile(confidence, df)`: the two-sided critical value, exact to ~1e-12;
- `mean_ci(values)`: mean -/+ t_{n-1} * sd / sqrt(n) over seeds (also a paired difference's
  interval, the values being the per-seed differences); `t_half_width` is its half-width;
- `bootstrap_means`, `percentile_interval`, `bootstrap_mean_ci`, `bootstrap_errorbar`: the
  percentile bootstrap of a mean, with a seeded generator so an interval is reproducible;
- `paired_bootstrap`: the percentile interval of a paired difference that resamples seeds and
  evaluation problems jointly (scope_lib/notebook/verdict.py builds its verdicts on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["t_quantile", "t_half_width", "mean_ci", "check_confidence", "check_bootstrap", "percentile_interval", "bootstrap_means",
           "bootstrap_mean_ci", "bootstrap_errorbar", "paired_bootstrap"]


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence}")


# --- Student t ----------------------------------------------------------------------------


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


def t_half_width(sd: float, n: int, confidence: float = 0.95) -> float:
    """t_{confidence, n-1} * sd / sqrt(n): the half-width of the t interval of a mean of `n`
    values whose sample standard deviation (ddof=1) is `sd`."""
    return t_quantile(confidence, n - 1) * sd / math.sqrt(n)


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student t interval mean -/+ t_{df=n-1} * s / sqrt(n) with the
    sample standard deviation (ddof=1). For one value the interval is undefined and
    (mean, nan, nan) is returned, so a single-seed smoke run still tabulates."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"values: expected a non-empty 1-D sequence, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("values: expected finite numbers, got NaN or inf")
    check_confidence(confidence)
    mean = float(array.mean())
    if array.size == 1:
        return mean, math.nan, math.nan
    half_width = t_half_width(float(array.std(ddof=1)), array.size, confidence)
    return mean, mean - half_width, mean + half_width


# --- percentile bootstrap -----------------------------------------------------------------


def percentile_interval(draws: np.ndarray, confidence: float = 0.95, axis: int | None = None) -> np.ndarray:
    """The ((1 - confidence) / 2, (1 + confidence) / 2) quantile pair of resampled statistics
    (linear interpolation), stacked on a new first axis: `low, high = percentile_interval(...)`."""
    return np.quantile(draws, [(1 - confidence) / 2, (1 + confidence) / 2], axis=axis)


def bootstrap_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, ...) means over the first axis of resamples of `x`'s rows with replacement."""
    return x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)


def check_bootstrap(confidence, n_boot) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError(f"n_boot: expected a positive int of resamples, got {n_boot!r}")


def bootstrap_mean_ci(values, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): percentile bootstrap interval of the mean of `values`, resampled with
    `np.random.default_rng(seed)`. Empty input gives NaNs; a single value gives a zero-width
    interval."""
    check_bootstrap(confidence, n_boot)
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        return (np.nan, np.nan, np.nan)
    low, high = percentile_interval(bootstrap_means(x, n_boot, np.random.default_rng(seed)), confidence)
    return (float(x.mean()), float(low), float(high))


def bootstrap_errorbar(*, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> Callable:
    """A seaborn `errorbar` callable: (low, high) of `bootstrap_mean_ci` with these settings."""
    check_bootstrap(confidence, n_boot)

    def interval(values) -> tuple[float, float]:
        _, low, high = bootstrap_mean_ci(values, confidence=confidence, n_boot=n_boot, seed=seed)
        return low, high

    return interval


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, confidence: float, num_resamples: int, seed: int,
                     relative: bool) -> tuple[float, float]:
    """(low, high): percentile interval of mean over seeds of (mean_j a[s, j] - mean_j b[s, j])
    (or 100 (mean a - mean b) / mean b when `relative`), for (seeds, problems) score matrices.

    One resample draws n seeds with replacement and, shared by every drawn seed and both
    variants, P problems with replacement (problems are crossed with seeds). The draws are made
    up front from `np.random.default_rng(seed)`: first seed indices (num_resamples, n), then
    problem indices (num_resamples, P).
    """
    n, problems = a.shape
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, n, size=(num_resamples, n))  # (R, n)
    problem_draws = rng.integers(0, problems, size=(num_resamples, problems))  # (R, P)
    stats = np.empty(num_resamples, dtype=np.float64)
    chunk = max(1, 2_000_000 // max(problems, n))  # bounds the (chunk, P) count matrices
    for start in range(0, num_resamples, chunk):
        stop = min(start + chunk, num_resamples)
        rows = np.arange(stop - start)[:, None]
        # Count how often each seed / problem was drawn: a resample's mean is a weighted mean.
        seed_counts = np.zeros((stop - start, n))
        np.add.at(seed_counts, (rows, seed_draws[start:stop]), 1.0)  # (r, n)
        problem_counts = np.zeros((stop - start, problems))
        np.add.at(problem_counts, (rows, problem_draws[start:stop]), 1.0)  # (r, P)
        if relative:
            a_means = problem_counts @ a.T / problems  # (r, n): each seed's resampled mean
            b_means = problem_counts @ b.T / problems
            with np.errstate(divide="ignore", invalid="ignore"):
                per_draw = 100.0 * (a_means - b_means) / b_means
            per_draw = np.where(seed_counts > 0, per_draw, 0.0)  # a seed not drawn adds nothing
            if not np.all(np.isfinite(per_draw)):
                raise ValueError("b_scores: a resample of problems has mean score 0 for a drawn seed, so the "
                                 "relative difference is undefined; use relative=False or more problems")
        else:
            per_draw = problem_counts @ (a - b).T / problems  # (r, n)
        stats[start:stop] = (seed_counts * per_draw).sum(axis=1) / n
    low, high = percentile_interval(stats, confidence)
    return float(low), float(high)
