"""The paper's error-recovery study (Sec. 2, Fig. 1b; Appendix C.1 and C.4, Tables 6, 7, 9-12).

Does a teacher recover more often from a flawed student prefix that it finds plausible?
The procedure of Appendix C.1, step by step (`recovery_study`):

1. sample `samples_per_problem` student rollouts per problem; keep the incorrect ones;
2. score each under the teacher over the response tokens only (Eq. 23):
   `PPL_T(y) = exp(-(1/|y|) sum_t log pi_T(y_t | x, y_<t))`, i.e. `exp(-s_T)`;
3. split them into four equal-sized buckets by PPL quartile, Q1 = lowest PPL (`ppl_quartiles`,
   Table 6 statistics from `bucket_stats`);
4. truncate each at the newline boundary nearest to `ratio * length`, for ratios 0.2..0.8
   (`truncate_at_newline`);
5. let the teacher complete `prompt + prefix` `completions_per_prefix` times and grade the
   whole trajectory `prefix + completion`; the recovery rate of a prefix is its mean accuracy
   (`recovery_table` gives Table 7, `recovery_curve` Fig. 1b with bootstrap intervals).

Where this departs from the paper (which leaves these open):
- lengths are measured in characters of the decoded response, not tokens: the cut is made on
  text and the boundary is a character, so one unit for both keeps the rule exact;
- a prefix ends just after its newline (the completion starts on a fresh line); candidate
  prefixes are the empty prefix and every prefix ending in a newline, so a text without a
  newline truncates to the empty prefix; ties go to the shorter prefix;
- identical `prompt + prefix` strings (e.g. the empty prefix of two rollouts of one problem)
  are completed once and share their completions: the same experiment, run once;
- the teacher completes with the student's sampling temperature (the paper's value was lost
  in the text extraction; both are 0.6 there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from scope_lib import rollout  # rollout.generate_rollouts looked up at call time (tests script it)
from scope_lib.pipeline import incorrect_rows, score_rollouts
from scope_lib.problem import Problem
from scope_lib.rollout import Sampling
# Re-exported: the intervals of Table 7 and Fig. 1b, one value per rollout (its recovery rate over
# completions; completions of one prefix are correlated, so rollouts are the resampled units).
# `bootstrap_errorbar` with a cell's settings draws exactly `recovery_curve`'s interval.
from scope_lib.common.stats import bootstrap_errorbar, bootstrap_mean_ci, bootstrap_means, check_bootstrap, percentile_interval
# Re-exported: the Tables 9-12 "Error type" column is diagnosed by the task that owns the format.
from scope_lib.worlds.chain import CHAIN_ERROR_KINDS, ChainError, first_chain_error
from scope_lib.teacher import LocalTeacher
from scope_lib.verify import extract_boxed, grade_batch

DEFAULT_RATIOS = (0.2, 0.4, 0.6, 0.8)  # Fig. 1b / Table 7
RECOVERY_SAMPLING = Sampling(temperature=0.6, max_new_tokens=96)  # Table 4's temperature; a config's: Sampling.from_config(cfg.eval)
BUCKET_NAMES = ("Q1", "Q2", "Q3", "Q4")  # Q1 = lowest teacher PPL
BUCKET_LABELS = ("Q1 (lowest PPL)", "Q2", "Q3", "Q4 (highest PPL)")

__all__ = [
    "BUCKET_LABELS",
    "BUCKET_NAMES",
    "DEFAULT_RATIOS",
    "RecoveryStudy",
    "bootstrap_errorbar",
    "bootstrap_mean_ci",
    "CHAIN_ERROR_KINDS",
    "ChainError",
    "bucket_stats",
    "case_studies",
    "first_chain_error",
    "ppl_quartiles",
    "quartile_gap",
    "rank_correlation",
    "recovery_curve",
    "recovery_study",
    "recovery_table",
    "truncate_at_newline",
]


# ---------------------------------------------------------------------------------------------
# truncation


def _check_ratio(ratio) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio: expected a number in [0, 1], got {ratio!r}")
    return float(ratio)


def truncate_at_newline(text: str, ratio: float) -> str:
    """The prefix of `text` cut at the newline boundary nearest to `ratio * len(text)` characters.

    Candidates are the empty prefix and every prefix that ends right after a `"\\n"`; the one
    whose length is nearest to the target wins, the shorter one on a tie. A text without a
    newline gives `""` (the teacher then solves from scratch).
    """
    if not isinstance(text, str):
        raise ValueError(f"text: expected str, got {type(text).__name__}")
    target = _check_ratio(ratio) * len(text)
    best = 0
    start = 0
    while (newline := text.find("\n", start)) != -1:
        end = newline + 1
        if abs(end - target) < abs(best - target):  # strict: ties keep the shorter prefix
            best = end
        elif end > target:
            break  # boundaries only move further away from here on
        start = end
    return text[:best]


# ---------------------------------------------------------------------------------------------
# perplexity buckets (Table 6)


def _as_float64(seq_logp, name: str) -> np.ndarray:
    if isinstance(seq_logp, torch.Tensor):
        seq_logp = seq_logp.detach().cpu().double().numpy()
    values = np.asarray(seq_logp, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array (one entry per rollout), got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name}: expected finite length-normalised log-probs, got NaN or inf")
    return values


def ppl_quartiles(teacher_seq_logp) -> np.ndarray:
    """Quartile bucket of each rollout's teacher perplexity: 0 = Q1 (lowest PPL) .. 3 = Q4.

    teacher_seq_logp: (N,) length-normalised teacher log-probs `s_T` (tensor or array), N >= 4.
    `PPL = exp(-s_T)`; with `q = np.percentile(PPL, [25, 50, 75])` (linear interpolation), a
    rollout is in bucket k when `q[k-1] < PPL <= q[k]` (right-closed, like `pd.qcut`), so
    buckets have equal sizes up to ties and N mod 4. Returns (N,) int64.
    """
    s = _as_float64(teacher_seq_logp, "teacher_seq_logp")
    if s.size < 4:
        raise ValueError(f"teacher_seq_logp: expected at least 4 rollouts for quartiles, got {s.size}")
    # Bucket on NLL = -s rather than PPL = exp(-s): the order is the same, and exp cannot overflow.
    nll = -s
    edges = np.percentile(nll, [25, 50, 75])
    return np.searchsorted(edges, nll, side="left").astype(np.int64)


def bucket_stats(teacher_seq_logp, buckets) -> pd.DataFrame:
    """Table 6: teacher PPL and NLL-per-token statistics per bucket, plus an "Overall" row.

    Columns: n, ppl_mean, ppl_median, ppl_min, ppl_max, nll_mean, nll_median, nll_min, nll_max
    (NLL per token = `-s_T`, PPL = `exp(NLL)`). Index: "Q1 (lowest PPL)" .. "Q4 (highest PPL)",
    "Overall".
    """
    s = _as_float64(teacher_seq_logp, "teacher_seq_logp")
    buckets = np.asarray(buckets)
    if buckets.shape != s.shape:
        raise ValueError(f"buckets: expected shape {s.shape} like teacher_seq_logp, got {buckets.shape}")
    nll = -s
    rows = {}
    for k, label in enumerate(BUCKET_LABELS):
        rows[label] = _stats(nll[buckets == k])
    rows["Overall"] = _stats(nll)
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "bucket"
    return table


def _stats(nll: np.ndarray) -> dict[str, float]:
    if nll.size == 0:
        return {"n": 0, **{f"{m}_{s}": np.nan for m in ("ppl", "nll") for s in ("mean", "median", "min", "max")}}
    ppl = np.exp(nll)
    out: dict[str, float] = {"n": int(nll.size)}
    for name, values in (("ppl", ppl), ("nll", nll)):
        out.update({f"{name}_mean": values.mean(), f"{name}_median": float(np.median(values)),
                    f"{name}_min": values.min(), f"{name}_max": values.max()})
    return out


# ---------------------------------------------------------------------------------------------
# aggregation (Table 7, Fig. 1b)


_RATE_COLUMNS = ("bucket", "ratio", "recovery")


def _check_rates(rates: pd.DataFrame) -> None:
    if not isinstance(rates, pd.DataFrame):
        raise ValueError(f"rates: expected a pandas DataFrame, got {type(rates).__name__}")
    missing = [c for c in _RATE_COLUMNS if c not in rates.columns]
    if missing:
        raise ValueError(f"rates: expected columns {list(_RATE_COLUMNS)}, missing {missing}")


def recovery_table(rates: pd.DataFrame) -> pd.DataFrame:
    """Table 7: mean recovery rate (percent) per truncation ratio (rows) and bucket (columns).

    rates: one row per rollout x ratio with columns `bucket` (0..3), `ratio` and `recovery`
    (the prefix's mean accuracy over its completions), as `recovery_study` returns. Each
    rollout counts once per cell (the paper's "mean accuracy over these completions", with
    equal completions per prefix). Adds "All" (every rollout) and "Q1-Q4 gap" columns.
    """
    _check_rates(rates)
    table = rates.pivot_table(index="ratio", columns="bucket", values="recovery", aggfunc="mean")
    table = table.reindex(columns=range(len(BUCKET_NAMES))) * 100
    table.columns = list(BUCKET_NAMES)
    table["All"] = rates.groupby("ratio")["recovery"].mean() * 100
    table["Q1-Q4 gap"] = table["Q1"] - table["Q4"]
    table.index.name = "ratio"
    return table


def recovery_curve(rates: pd.DataFrame, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Fig. 1b data: per bucket and ratio the mean recovery rate with a bootstrap interval.

    Returns a long table with columns bucket, quartile ("Q1".."Q4"), ratio, n_rollouts,
    recovery, low, high (fractions in [0, 1]); see `bootstrap_mean_ci` for the interval.
    """
    _check_rates(rates)
    rows = []
    for (bucket, ratio), cell in rates.groupby(["bucket", "ratio"], sort=True):
        mean, low, high = bootstrap_mean_ci(cell["recovery"], confidence=confidence, n_boot=n_boot, seed=seed)
        rows.append({"bucket": int(bucket), "quartile": BUCKET_NAMES[int(bucket)], "ratio": float(ratio),
                     "n_rollouts": len(cell), "recovery": mean, "low": low, "high": high})
    return pd.DataFrame(rows)


def quartile_gap(rates: pd.DataFrame, *, confidence: float = 0.95, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """The Q1-Q4 recovery gap per ratio (fractions) with a bootstrap interval.

    Q1 and Q4 rollouts are resampled independently (they are disjoint samples). Returns
    columns ratio, gap, low, high, n_q1, n_q4; a ratio whose Q1 or Q4 cell is empty gets NaN.
    """
    _check_rates(rates)
    check_bootstrap(confidence, n_boot)
    rng = np.random.default_rng(seed)
    rows = []
    for ratio, at_ratio in rates.groupby("ratio", sort=True):
        q1 = at_ratio.loc[at_ratio["bucket"] == 0, "recovery"].to_numpy(dtype=np.float64)
        q4 = at_ratio.loc[at_ratio["bucket"] == len(BUCKET_NAMES) - 1, "recovery"].to_numpy(dtype=np.float64)
        if q1.size == 0 or q4.size == 0:
            gap = low = high = np.nan
        else:
            gaps = bootstrap_means(q1, n_boot, rng) - bootstrap_means(q4, n_boot, rng)
            gap = q1.mean() - q4.mean()
            low, high = percentile_interval(gaps, confidence)
        rows.append({"ratio": float(ratio), "gap": float(gap), "low": float(low), "high": float(high),
                     "n_q1": int(q1.size), "n_q4": int(q4.size)})
    return pd.DataFrame(rows)


def rank_correlation(rates: pd.DataFrame) -> pd.Series:
    """Spearman correlation between teacher PPL and recovery rate, per ratio (index).

    A finer test of the paper's claim than the Q1-Q4 gap: it uses every rollout's PPL, not
    just its quartile. Ties get average ranks; a ratio where either column is constant gives NaN.
    """
    _check_rates(rates)
    if "ppl" not in rates.columns:
        raise ValueError("rates: expected a 'ppl' column")

    def spearman(cell: pd.DataFrame) -> float:
        return cell["ppl"].rank().corr(cell["recovery"].rank())

    return rates.groupby("ratio", sort=True)[["ppl", "recovery"]].apply(spearman).rename("spearman")


def case_studies(cases: pd.DataFrame, n: int = 4, *, excerpt_chars: int = 160) -> pd.DataFrame:
    """Tables 9-12: the `n` incorrect rollouts with the highest teacher PPL.

    cases: one row per incorrect rollout as `recovery_study` returns. The excerpt is the start
    of the response with newlines shown as " / " (so the row fits a Markdown table). Repeated
    rollouts (same question and text, sampled twice) are shown once.
    """
    if n < 1:
        raise ValueError(f"n: expected >= 1 cases, got {n!r}")
    top = cases.sort_values("ppl", ascending=False, kind="stable").drop_duplicates(["question", "text"]).head(n)
    out = pd.DataFrame({
        "problem": top["question"], "gold": top["gold"], "student answer": top["student_answer"].fillna("(none)"),
        "teacher PPL": top["ppl"], "NLL/token": top["nll"], "bucket": [BUCKET_NAMES[b] for b in top["bucket"]],
    })
    if "error_type" in top.columns and top["error_type"].notna().any():
        out["error type"] = top["error_type"].fillna("")
    out["excerpt"] = [_excerpt(t, excerpt_chars) for t in top["text"]]
    return out.reset_index(drop=True)


def _excerpt(text: str, limit: int) -> str:
    flat = text.replace("\n", " / ")
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------
# the study


@dataclass
class RecoveryStudy:
    rates: pd.DataFrame  # one row per incorrect rollout x ratio (see recovery_study)
    cases: pd.DataFrame  # one row per incorrect rollout: problem, text, teacher PPL, bucket
    num_rollouts: int  # student rollouts sampled
    num_incorrect: int  # of which incorrect (the studied population)
    num_teacher_prompts: int  # distinct prompt + prefix strings completed by the teacher
    settings: dict = field(default_factory=dict)

    @property
    def student_accuracy(self) -> float:
        return 1.0 - self.num_incorrect / self.num_rollouts


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


@torch.no_grad()
def recovery_study(
    student,
    teacher,
    tokenizer,
    problems: Sequence[Problem],
    format_prompt: Callable[[Problem], str],
    *,
    samples_per_problem: int,
    completions_per_prefix: int,
    sampling: Sampling = RECOVERY_SAMPLING,
    student_sampling: Sampling | None = None,
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    progress: bool = True,
    diagnose: Callable[[Problem, str], object | None] = first_chain_error,
) -> RecoveryStudy:
    """Run the error-recovery experiment of Appendix C.1 (see the module docstring).

    student, teacher: causal LMs sharing `tokenizer`; the teacher both scores the incorrect
    rollouts (PPL) and completes their prefixes. `sampling` (a `rollout.Sampling`; its
    `batch_size` is the sequences per generate call) samples both the student's rollouts and the
    teacher's completions, unless `student_sampling` is given for the rollouts (the world's
    preconditions sample them at the training rollouts' temperature).
    `diagnose(problem, text)`: the task's first-error diagnosis, an object with `line` (0-based
    index of the first wrong line) and `kind`, or None (the chain task's `first_chain_error`
    by default; `scope_lib.worlds.routes.first_route_error` for the route world).

    Returns a RecoveryStudy whose `rates` has one row per incorrect rollout and ratio with
    columns rollout, problem_id, bucket (0 = Q1), ppl, nll, ratio, response_chars,
    prefix_chars, prefix_fraction (prefix_chars / response_chars), prefix_has_error (tiny
    task: the prefix holds the first wrong line; None elsewhere), n_completions, n_correct,
    recovery (= n_correct / n_completions); `cases` has one row per incorrect rollout with
    rollout, problem_id, question, gold, tier, student_answer, text, response_tokens, ppl,
    nll, bucket, error_line, error_kind, error_type (`first_chain_error`; None off the tiny
    task).
    """
    student_sampling = sampling if student_sampling is None else student_sampling
    for name, value in (("sampling", sampling), ("student_sampling", student_sampling)):
        if not isinstance(value, Sampling):
            raise ValueError(f"{name}: expected a rollout.Sampling, got {type(value).__name__}")
    batch_size = sampling.batch_size
    _check_positive(samples_per_problem=samples_per_problem, completions_per_prefix=completions_per_prefix,
                    batch_size=batch_size, max_new_tokens=sampling.max_new_tokens)
    if not problems:
        raise ValueError("problems: expected at least one problem")
    ratios = [_check_ratio(r) for r in ratios]
    if not ratios:
        raise ValueError("ratios: expected at least one truncation ratio")

    # --- 1-2. student rollouts, graded; the incorrect ones scored by the teacher over the
    # response tokens only (Eq. 23), through the project's rollout pipeline
    scored = score_rollouts(student, tokenizer, problems, format_prompt=format_prompt,
                            group_size=samples_per_problem, sampling=student_sampling, seed=seed,
                            teacher=LocalTeacher(teacher), teacher_rows=incorrect_rows)
    rollouts, prompts = scored.rollouts, scored.prompts
    problem_of = rollouts.group.tolist()
    rows = scored.teacher_rows  # the incorrect rollouts, in order
    wrong = rows.tolist()
    if len(wrong) < len(BUCKET_NAMES):
        raise ValueError(
            f"problems: {len(wrong)} of {len(rollouts)} student rollouts are incorrect, expected at least "
            f"{len(BUCKET_NAMES)} for quartiles; use more or harder problems, or more samples_per_problem"
        )
    teacher_s = scored.teacher_seq_logp()[rows].double().numpy()  # (W,)

    # --- 3. quartile buckets (Table 6)
    buckets = ppl_quartiles(teacher_s)

    # --- 4. prefixes at each ratio; identical prompt + prefix strings are completed once
    errors = [diagnose(problems[problem_of[i]], rollouts.texts[i]) for i in wrong]  # None off the tiny tasks
    job_of: dict[str, int] = {}
    job_texts: list[str] = []
    job_golds: list[str] = []
    job_prefixes: list[str] = []
    records = []
    for w, i in enumerate(wrong):
        problem = problems[problem_of[i]]
        text = rollouts.texts[i]
        error_line = errors[w].line if errors[w] else None
        for ratio in ratios:
            prefix = truncate_at_newline(text, ratio)
            key = prompts[problem_of[i]] + prefix
            if key not in job_of:
                job_of[key] = len(job_texts)
                job_texts.append(key)
                job_golds.append(problem.answer)
                job_prefixes.append(prefix)
            records.append({
                "rollout": w, "problem_id": problem.id, "bucket": int(buckets[w]), "ppl": float(np.exp(-teacher_s[w])),
                "nll": float(-teacher_s[w]), "ratio": ratio, "response_chars": len(text), "prefix_chars": len(prefix),
                "prefix_fraction": len(prefix) / len(text) if text else 0.0, "job": job_of[key],
                "prefix_has_error": None if error_line is None else prefix.count("\n") > error_line,
            })

    # --- 5. teacher completions, graded as whole trajectories (prefix + completion)
    per_call = max(1, batch_size // completions_per_prefix)  # prompts per generate call
    completions: list[str] = []
    chunks = range(0, len(job_texts), per_call)
    for chunk_index, start in enumerate(tqdm(chunks, desc="teacher completions", disable=not progress)):
        batch = rollout.generate_rollouts(teacher, tokenizer, job_texts[start: start + per_call],
                                  num_samples=completions_per_prefix, sampling=sampling, seed=seed + 1 + chunk_index)
        completions.extend(batch.texts)  # rows of one prompt are adjacent
    job_index = np.repeat(np.arange(len(job_texts)), completions_per_prefix)
    grades = grade_batch([job_prefixes[j] + c for j, c in zip(job_index, completions)],
                         [job_golds[j] for j in job_index])
    job_correct = np.bincount(job_index, weights=np.asarray(grades, dtype=np.float64), minlength=len(job_texts))

    rates = pd.DataFrame(records)
    rates["n_completions"] = completions_per_prefix
    rates["n_correct"] = job_correct[rates["job"].to_numpy()].astype(np.int64)
    rates["recovery"] = rates["n_correct"] / rates["n_completions"]
    rates = rates.drop(columns="job")

    cases = pd.DataFrame({
        "rollout": range(len(wrong)),
        "problem_id": [problems[problem_of[i]].id for i in wrong],
        "question": [problems[problem_of[i]].question for i in wrong],
        "gold": [problems[problem_of[i]].answer for i in wrong],
        "tier": [problems[problem_of[i]].tier for i in wrong],
        "student_answer": [extract_boxed(rollouts.texts[i]) for i in wrong],
        "text": [rollouts.texts[i] for i in wrong],
        "response_tokens": rollouts.response_lengths[rows].tolist(),
        "ppl": np.exp(-teacher_s),
        "nll": -teacher_s,
        "bucket": buckets,
        "error_line": [e.line if e else None for e in errors],
        "error_kind": [e.kind if e else None for e in errors],
        "error_type": [str(e) if e else None for e in errors],
    })
    settings = dict(samples_per_problem=samples_per_problem, ratios=list(ratios),
                    completions_per_prefix=completions_per_prefix, seed=seed, num_problems=len(problems),
                    temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                    max_new_tokens=sampling.max_new_tokens, batch_size=batch_size,
                    student_temperature=student_sampling.temperature)
    return RecoveryStudy(rates=rates, cases=cases, num_rollouts=len(rollouts), num_incorrect=len(wrong),
                         num_teacher_prompts=len(job_texts), settings=settings)
