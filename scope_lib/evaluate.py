"""Evaluation as in the paper's Table 4, scaled down: k samples per problem at temperature
0.6, graded by `scope_lib.grading` (math answers by `scope_lib.verify`, code in the sandbox by
`scope_lib.grading.code`), reported as Avg@k and (unbiased) Pass@k per eval set and averaged
over sets.

`evaluate` keeps every per-sample grade, so Pass@k curves (Fig. 4) and any other statistic
are computed from the result without generating again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scope_lib import grading, metrics
from scope_lib.worlds import chain as tasks
from scope_lib.problem import Problem
from scope_lib.common.progress import bar as progress_bar  # tqdm, or a line drawn by the parent of a worker process
from scope_lib.rollout import Sampling, generate_rollouts

# Table 4's temperature at the tiny scale's completion budget; a config's own: Sampling.from_config(cfg.eval)
EVAL_SAMPLING = Sampling(temperature=0.6, max_new_tokens=96)


@dataclass
class EvalResult:
    k: int
    correct: dict[str, np.ndarray]  # set name -> (problems, k) bool grades
    texts: dict[str, list[list[str]]] = field(default_factory=dict)  # set -> per problem k responses
    settings: dict = field(default_factory=dict)

    def counts(self, name: str) -> np.ndarray:
        """Correct samples per problem of one set, (problems,) int."""
        return self.correct[name].sum(axis=1)

    def avg_at_k(self, name: str) -> float:
        return metrics.avg_at_k(self.correct[name])

    def pass_at_k(self, name: str, k: int | None = None) -> float:
        return metrics.mean_pass_at_k(self.counts(name), self.k, k or self.k)

    def summary(self) -> dict[str, dict[str, float]]:
        """{set: {"avg@k": ..., "pass@k": ...}} plus an "average" row (unweighted mean of sets)."""
        rows = {name: {f"avg@{self.k}": self.avg_at_k(name), f"pass@{self.k}": self.pass_at_k(name)}
                for name in self.correct}
        rows["average"] = {key: float(np.mean([row[key] for row in rows.values()]))
                           for key in (f"avg@{self.k}", f"pass@{self.k}")}
        return rows

    def pass_at_k_curve(self, name: str, ks=None) -> dict[int, float]:
        return metrics.pass_at_k_curve(self.counts(name), self.k, ks)


def evaluate(model, tokenizer, eval_sets: dict[str, list[Problem]], *, k: int, sampling: Sampling = EVAL_SAMPLING,
             format_prompt=None, seed: int = 0, progress: bool = True, keep_texts: bool = False,
             verifier: str | None = None, code: grading.CodeGrading | None = None) -> EvalResult:
    """Sample k responses per problem of every eval set as `sampling` says and grade them against
    the gold answers.

    `format_prompt` maps a Problem to the prompt text (default: the tiny task's format).
    The same seed gives the same samples, so two models are compared on equal terms.
    `verifier`: "math" or "code" for every set (a config's `reward.verifier`); None: each set's
    own, from its problems' sources (`grading.kind_of`). `code`: the sandbox settings of the
    code verifier (`grading.CodeGrading.from_config(cfg.reward)`; default CodeGrading()).
    """
    if k < 1:
        raise ValueError(f"k: expected >= 1 samples per problem, got {k}")
    if not eval_sets:
        raise ValueError("eval_sets: expected at least one named set of problems")
    if verifier is not None and verifier not in grading.KINDS:
        raise ValueError(f"verifier: expected one of {grading.KINDS} or None, got {verifier!r}")
    kinds = {name: verifier or grading.kind_of(problems, f"eval_sets[{name!r}]") for name, problems in eval_sets.items()}
    if format_prompt is None:
        format_prompt = tasks.format_prompt
    correct, texts = {}, {}
    for index, (name, problems) in enumerate(progress_bar(eval_sets.items(), desc="evaluate", disable=not progress)):
        if not problems:
            raise ValueError(f"eval_sets[{name!r}]: expected at least one problem")
        batch = generate_rollouts(model, tokenizer, [format_prompt(p) for p in problems], num_samples=k,
                                  sampling=sampling, seed=seed + index)
        graded = [problems[int(g)] for g in batch.group]
        grades = np.array(grading.grade(kinds[name], batch.texts, graded, code=code), dtype=bool)
        correct[name] = grades.reshape(len(problems), k)  # rows of a prompt are adjacent
        if keep_texts:
            texts[name] = [batch.texts[i * k: (i + 1) * k] for i in range(len(problems))]
    settings = dict(k=k, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
                    max_new_tokens=sampling.max_new_tokens, repetition_penalty=sampling.repetition_penalty, seed=seed,
                    verifiers=kinds)
    return EvalResult(k=k, correct=correct, texts=texts, settings=settings)
