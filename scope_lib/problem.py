"""The unit every task and benchmark produces: one verifiable problem."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One problem with a verifiable final answer.

    `question` is the raw problem text; prompt formatting (plain text for the tiny world, a
    chat template for real models) is applied later, so one problem serves every scale.
    `answer` is the gold final answer as a string, graded by `scope_lib.verify.is_correct`.
    """

    id: str  # unique within its source, e.g. "math500/17" or "tiny/chain3/42"
    question: str
    answer: str
    solution: str | None = None  # worked solution ending in \boxed{answer}, when known
    source: str = ""  # eval-set or benchmark name, e.g. "aime24" or "chain3"
    tier: int | None = None  # difficulty tier (tiny world), None for real benchmarks
    meta: dict = field(default_factory=dict, compare=False, hash=False)
