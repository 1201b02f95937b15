"""The one verdict rule for every claim on the results page.

Runs compared under the same seed share the prompt order and the evaluation problems, so a
claim "A beats B" is judged on paired differences, never on two separate intervals:

1. per seed s present for both A and B, d_s = A_s - B_s (or the relative difference
   100 (A_s - B_s) / B_s, in percent, when the paper states the effect as "% relative");
2. a 95% interval for the mean of d over seeds: Student t on the paired differences,
   mean(d) -/+ t_{0.975, n-1} * sd(d) / sqrt(n) (`paired_difference`), or a percentile
   bootstrap that resamples seeds and evaluation problems jointly when per-problem scores
   exist (`bootstrap_difference`);
3. **reproduced** if the interval excludes 0 on the side the paper claims, **contradicted**
   if it excludes 0 on the other side, **inconclusive** otherwise, and always inconclusive,
   with the reason, under 2 paired seeds (no interval over seeds exists then).

`claim_line` writes the verdict, our effect with its interval and the paper's effect as one
Markdown list item; `check_line` labels a test of the implementation itself (an identity, a
monotonicity) as a check, passed or failed, so it never reads as a reproduction of the paper.
`RULE_TEXT` states the rule at the top of the results page.

    diff = paired_difference(scope_avg, opd_avg)          # {seed: Avg@16}, {seed: Avg@16}
    claim_line("SCOPE − OPD Avg@16", diff, "greater", paper_effect="+5.5% relative", unit=" points")
    # e.g. '- **reproduced** — SCOPE − OPD Avg@16: +3.1 points [+0.9, +5.3] (5 seeds; paper: +5.5% relative)'
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from scope_lib.common.stats import paired_bootstrap, t_half_width

Direction = Literal["greater", "less"]
Verdict = Literal["reproduced", "contradicted", "inconclusive"]
DIRECTIONS: tuple[str, ...] = ("greater", "less")

RULE_TEXT = (
    "**How claims are judged.** Runs compared under the same seed share the prompt order and the "
    "evaluation problems. For each claim we take the per-seed difference of the compared "
    "quantities (ours minus the reference, or the relative difference in % where the paper "
    "reports one) and its 95% interval over seeds: Student t on the paired differences, or a "
    "percentile bootstrap over seeds and problems where stated. **reproduced**: the interval "
    "excludes 0 in the paper's direction; **contradicted**: it excludes 0 in the other "
    "direction; **inconclusive**: otherwise, including fewer than 2 paired seeds. The paper's "
    "effect size is printed next to ours. Lines marked **check** test the implementation "
    "(an identity, a property of the code), not a claim of the paper."
)


@dataclass(frozen=True)
class Difference:
    """A paired difference A - B over seeds and its interval.

    `per_seed` maps each paired seed to its difference (percent when `relative`); `mean` is
    their mean and [`low`, `high`] the interval at `confidence` (NaN, with `reason` set, when
    fewer than 2 seeds are paired). `dropped_a` / `dropped_b` are the seeds found only in A /
    only in B, left out of the pairing. `method` is "t" or "bootstrap"; `problems` is the
    number of evaluation problems per seed for the bootstrap (None for "t").
    """

    mean: float
    low: float
    high: float
    per_seed: dict[Hashable, float]
    confidence: float = 0.95
    method: Literal["t", "bootstrap"] = "t"
    relative: bool = False
    dropped_a: tuple[Hashable, ...] = ()
    dropped_b: tuple[Hashable, ...] = ()
    problems: int | None = None
    reason: str | None = None

    @property
    def n(self) -> int:
        """Number of paired seeds."""
        return len(self.per_seed)

    @property
    def half_width(self) -> float:
        """(high - low) / 2: the t interval's half-width; for a bootstrap, which need not be
        symmetric about the mean, half its length."""
        return (self.high - self.low) / 2


# --- pairing seeds ------------------------------------------------------------------------


def _sorted_seeds(seeds) -> list:
    try:
        return sorted(seeds)
    except TypeError:  # mixed seed types: keep the order given
        return list(seeds)


def _pair(a: Mapping, b: Mapping, names: tuple[str, str]) -> tuple[list, tuple, tuple]:
    """(paired seeds, seeds only in a, seeds only in b), each in seed order."""
    for name, values in zip(names, (a, b)):
        if not isinstance(values, Mapping):
            raise TypeError(f"{name}: expected a mapping seed -> value, got {type(values).__name__}")
    paired = _sorted_seeds([seed for seed in a if seed in b])
    only_a = tuple(_sorted_seeds([seed for seed in a if seed not in b]))
    only_b = tuple(_sorted_seeds([seed for seed in b if seed not in a]))
    return paired, only_a, only_b


def _too_few_reason(paired: list, only_a: tuple, only_b: tuple) -> str:
    reason = f"{len(paired)} paired seed{'s' if len(paired) != 1 else ''}; an interval over seeds needs at least 2"
    if only_a or only_b:
        reason += f" (unpaired: only in a {list(only_a)}, only in b {list(only_b)})"
    return reason


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a value in (0, 1), got {confidence!r}")


def _scalar(values: Mapping, seed, name: str) -> float:
    value = float(values[seed])
    if not math.isfinite(value):
        raise ValueError(f"{name}[{seed!r}]: expected a finite number, got {value!r}")
    return value


# --- Student t on paired differences ------------------------------------------------------


def _t_difference(per_seed: dict, only_a: tuple, only_b: tuple, confidence: float, relative: bool) -> Difference:
    if len(per_seed) < 2:
        mean = float(np.mean(list(per_seed.values()))) if per_seed else math.nan
        return Difference(mean, math.nan, math.nan, per_seed, confidence, "t", relative, only_a, only_b,
                          reason=_too_few_reason(list(per_seed), only_a, only_b))
    diffs = np.fromiter(per_seed.values(), dtype=np.float64)  # (n,)
    mean = float(diffs.mean())
    half_width = t_half_width(float(diffs.std(ddof=1)), diffs.size, confidence)
    return Difference(mean, mean - half_width, mean + half_width, per_seed, confidence, "t", relative,
                      only_a, only_b)


def paired_difference(a: Mapping[Hashable, float], b: Mapping[Hashable, float], *,
                      confidence: float = 0.95) -> Difference:
    """Mean of the per-seed differences a[s] - b[s] and its Student t interval over seeds.

    `a` and `b` map seed -> one number (e.g. Avg@16 of SCOPE and of OPD for that seed). Only
    seeds present in both are paired; the others are reported in `dropped_a` / `dropped_b`.
    Interval: mean(d) -/+ t_{(1+confidence)/2, n-1} * sd(d, ddof=1) / sqrt(n). Under 2 paired
    seeds the interval is NaN and `reason` says why.
    """
    _check_confidence(confidence)
    paired, only_a, only_b = _pair(a, b, ("a", "b"))
    per_seed = {seed: _scalar(a, seed, "a") - _scalar(b, seed, "b") for seed in paired}
    return _t_difference(per_seed, only_a, only_b, confidence, relative=False)


def paired_relative_difference(a: Mapping[Hashable, float], b: Mapping[Hashable, float], *,
                               confidence: float = 0.95) -> Difference:
    """As `paired_difference`, on the per-seed relative difference 100 (a[s] - b[s]) / b[s], in %.

    This is the paper's unit for effects such as "+5.5% relative Avg@k"; each seed's own
    reference run is the denominator, so seed-to-seed shifts of both runs cancel.
    A reference value of 0 is an error that names the seed.
    """
    _check_confidence(confidence)
    paired, only_a, only_b = _pair(a, b, ("a", "b"))
    per_seed = {}
    for seed in paired:
        reference = _scalar(b, seed, "b")
        if reference == 0.0:
            raise ValueError(f"b[{seed!r}]: the relative difference divides by b, which is 0 for this seed")
        per_seed[seed] = 100.0 * (_scalar(a, seed, "a") - reference) / reference
    return _t_difference(per_seed, only_a, only_b, confidence, relative=True)


def paired_difference_from_frame(frame, a: str, b: str, *, value: str, relative: bool = False,
                                 confidence: float = 0.95, variant_column: str = "variant",
                                 seed_column: str = "seed") -> Difference:
    """`paired_difference` (or the relative one) between variants `a` and `b` of a tidy table.

    `frame` has one row per (variant, seed) with the compared number in column `value`, e.g.
    the rows of `experiments.grid.run_grid` filtered to one eval set. Two rows for the same variant
    and seed are an error: the table was not filtered down to one comparison.
    """
    for column in (variant_column, seed_column, value):
        if column not in frame.columns:
            raise ValueError(f"frame: no column {column!r}; columns are {list(frame.columns)}")
    by_variant = {}
    for variant in (a, b):
        rows = frame[frame[variant_column] == variant]
        repeated = rows[seed_column][rows[seed_column].duplicated()].tolist()
        if repeated:
            raise ValueError(f"frame: variant {variant!r} has several rows for seed(s) {repeated}; "
                             f"filter it to one row per seed (e.g. one eval_set) first")
        by_variant[variant] = dict(zip(rows[seed_column].tolist(), rows[value].tolist()))
    compare = paired_relative_difference if relative else paired_difference
    return compare(by_variant[a], by_variant[b], confidence=confidence)


# --- bootstrap over seeds and problems ----------------------------------------------------


def _score_matrix(scores: Mapping, seeds: list, name: str) -> np.ndarray:
    rows = []
    for seed in seeds:
        row = np.asarray(scores[seed], dtype=np.float64)
        if row.ndim != 1 or row.size == 0:
            raise ValueError(f"{name}[{seed!r}]: expected a non-empty 1-D array of per-problem scores, "
                             f"got shape {row.shape}")
        if rows and row.size != rows[0].size:
            raise ValueError(f"{name}[{seed!r}]: {row.size} problems, but seed {seeds[0]!r} has {rows[0].size}; "
                             f"every seed must score the same evaluation problems")
        if not np.all(np.isfinite(row)):
            raise ValueError(f"{name}[{seed!r}]: expected finite scores, got NaN or inf")
        rows.append(row)
    return np.stack(rows)  # (seeds, problems)


def bootstrap_difference(a_scores: Mapping[Hashable, np.ndarray], b_scores: Mapping[Hashable, np.ndarray], *,
                         confidence: float = 0.95, num_resamples: int = 2000, seed: int = 0,
                         relative: bool = False) -> Difference:
    """Paired difference with a percentile bootstrap over seeds and problems, jointly.

    `a_scores` / `b_scores` map seed -> (problems,) per-problem scores (e.g. each problem's
    accuracy over its k samples); every seed scores the same problems in the same order,
    so problem j is one problem across seeds and variants. Per seed, the statistic is
    mean_j A[s, j] - mean_j B[s, j] (or 100 (mean A - mean B) / mean B when `relative`),
    averaged over seeds; `per_seed` and `mean` are this on the data as given.

    One resample draws n seeds with replacement and, shared by every drawn seed and both
    variants, P problems with replacement (problems are crossed with seeds: a hard problem
    stays hard in every seed). The draws are made up front from
    `np.random.default_rng(seed)`: first seed indices (num_resamples, n), then problem
    indices (num_resamples, P), so the interval is reproducible. The interval is the
    ((1-confidence)/2, (1+confidence)/2) quantile pair of the resampled statistics
    (`scope_lib.common.stats.paired_bootstrap`).
    """
    _check_confidence(confidence)
    if int(num_resamples) != num_resamples or num_resamples < 1:
        raise ValueError(f"num_resamples: expected an integer >= 1, got {num_resamples!r}")
    paired, only_a, only_b = _pair(a_scores, b_scores, ("a_scores", "b_scores"))
    if not paired:
        return Difference(math.nan, math.nan, math.nan, {}, confidence, "bootstrap", relative, only_a, only_b,
                          reason=_too_few_reason(paired, only_a, only_b))
    a = _score_matrix(a_scores, paired, "a_scores")  # (n, P)
    b = _score_matrix(b_scores, paired, "b_scores")  # (n, P)
    if a.shape != b.shape:
        raise ValueError(f"b_scores: {b.shape[1]} problems per seed, but a_scores has {a.shape[1]}; "
                         f"both variants must score the same evaluation problems")
    n, problems = a.shape
    if relative and np.any(b.mean(axis=1) == 0.0):
        zero = [paired[i] for i in np.flatnonzero(b.mean(axis=1) == 0.0)]
        raise ValueError(f"b_scores: mean score 0 for seed(s) {zero}; the relative difference divides by it")
    per_seed_values = (a.mean(axis=1) - b.mean(axis=1)) * (100.0 / b.mean(axis=1) if relative else 1.0)
    per_seed = dict(zip(paired, per_seed_values.tolist()))
    if n < 2:
        return Difference(float(per_seed_values.mean()), math.nan, math.nan, per_seed, confidence, "bootstrap",
                          relative, only_a, only_b, problems, reason=_too_few_reason(paired, only_a, only_b))

    low, high = paired_bootstrap(a, b, confidence=confidence, num_resamples=num_resamples, seed=seed,
                                 relative=relative)
    return Difference(float(per_seed_values.mean()), low, high, per_seed, confidence, "bootstrap",
                      relative, only_a, only_b, problems)


# --- verdicts and results-page lines ------------------------------------------------------


def verdict(difference: Difference, direction: Direction) -> Verdict:
    """The rule: "reproduced" if the interval excludes 0 on the paper's side (`direction`
    "greater": A > B claimed, so low > 0; "less": high < 0), "contradicted" if it excludes 0
    on the other side, else "inconclusive" (also when there is no interval)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, got {direction!r}")
    low, high = difference.low, difference.high
    if difference.reason is not None or not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive"
    above, below = low > 0.0, high < 0.0
    if (above and direction == "greater") or (below and direction == "less"):
        return "reproduced"
    if above or below:
        return "contradicted"
    return "inconclusive"


def _signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}" if math.isfinite(value) else "n/a"


def claim_line(name: str, difference: Difference, direction: Direction, paper_effect: str, *,
               scale: float = 1.0, unit: str | None = None, digits: int = 1) -> str:
    """One results-page line: verdict, our effect and interval, seeds, the paper's effect.

    `name` says what is compared ("SCOPE − OPD Avg@16"); `paper_effect` is the paper's
    number in its own words ("+5.5% relative"). Values are multiplied by `scale` (e.g. 100
    for accuracies stored in [0, 1]) and followed by `unit` (default "% relative" for a
    relative difference, nothing otherwise). Returns a Markdown list item such as
    `- **reproduced** — SCOPE − OPD Avg@16: +3.1 [+0.9, +5.3] (5 seeds; paper: +5.5% relative)`.
    """
    if not isinstance(paper_effect, str) or not paper_effect.strip():
        raise ValueError(f"paper_effect: expected the paper's effect size as text, got {paper_effect!r}")
    outcome = verdict(difference, direction)
    unit = ("% relative" if difference.relative else "") if unit is None else unit
    ours = f"{_signed(scale * difference.mean, digits)}{unit}"
    if difference.reason is None:
        ours += f" [{_signed(scale * difference.low, digits)}, {_signed(scale * difference.high, digits)}]"
    evidence = [f"{difference.n} seed{'s' if difference.n != 1 else ''}"]
    if difference.method == "bootstrap":
        evidence[0] += f" × {difference.problems} problems, bootstrap"
    if difference.confidence != 0.95:
        evidence.append(f"{100 * difference.confidence:g}% interval")
    if difference.reason is not None:
        evidence.append(f"no interval: {difference.reason}")
    elif difference.dropped_a or difference.dropped_b:
        evidence.append(f"unpaired seeds dropped: {list(difference.dropped_a) + list(difference.dropped_b)}")
    evidence.append(f"paper: {paper_effect}")
    return f"- **{outcome}** — {name}: {ours} ({'; '.join(evidence)})"


def check_line(name: str, passed: bool, detail: str = "") -> str:
    """One results-page line for a check of the implementation (not a claim of the paper):
    `- **check passed** — name: detail` or `- **check failed** — ...`."""
    if not isinstance(passed, (bool, np.bool_)):
        raise TypeError(f"passed: expected a bool (the check's outcome), got {passed!r}")
    status = "check passed" if passed else "check failed"
    return f"- **{status}** — {name}" + (f": {detail}" if detail else "")
