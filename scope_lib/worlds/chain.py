"""The tiny world's synthetic verifiable math task: arithmetic chains.

A problem starts from a number and applies `n` operations (add, subtract, multiply by a
small factor), keeping every intermediate value in 0..99. The worked solution writes one
line per operation (`7+5=12`), so a wrong step early leaves a long flawed prefix, as in the
paper's error-recovery study (truncation at newline boundaries), and ends in `\\boxed{}`:

    Start with 7. Add 5. Multiply by 3. Subtract 4.
    7+5=12
    12*3=36
    36-4=32
    \\boxed{32}

The format is terse on purpose: every token costs CPU time in pretraining and rollouts.

The number of operations is the difficulty tier. The training pool (the DeepMath stand-in)
mixes tiers 1..5; the held-out eval sets `chain2`..`chain5` (the benchmark stand-ins) each
hold one tier. Train and eval are disjoint by content for any seeds and sizes: a question
belongs to the eval side iff a stable hash of its text falls in a fixed bucket
(`_is_eval_question`), and every generator filters on that.
"""

from __future__ import annotations

import hashlib
import random
import re
from typing import NamedTuple

from scope_lib.problem import Problem

MAX_VALUE = 99  # every intermediate value stays in 0..99: two-digit arithmetic only
MAX_OPERAND = 30  # added/subtracted operands; multipliers are 2..5
TRAIN_TIERS = (1, 2, 3, 4, 5)
EVAL_TIERS = {"chain2": 2, "chain3": 3, "chain4": 4, "chain5": 5}
_EVAL_BUCKETS = 8  # 1 in 8 possible questions is reserved for evaluation

_WORDS = {"+": "Add {b}.", "-": "Subtract {b}.", "*": "Multiply by {b}."}


def _is_eval_question(question: str) -> bool:
    # A content hash (not Python's salted hash) so the split is the same in every process.
    digest = hashlib.sha256(question.encode()).digest()
    return digest[0] % _EVAL_BUCKETS == 0


def _apply(value: int, op: str, operand: int) -> int:
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    return value * operand


def _sample_chain(rng: random.Random, num_ops: int) -> tuple[int, list[tuple[str, int]]]:
    start = rng.randint(1, 50)
    value, steps = start, []
    for _ in range(num_ops):
        choices = []
        if value < MAX_VALUE:
            choices.append("+")
        if value > 0:
            choices.append("-")
        if 0 < value <= MAX_VALUE // 2:
            choices.append("*")
        op = rng.choice(choices)
        if op == "+":
            operand = rng.randint(1, min(MAX_OPERAND, MAX_VALUE - value))
        elif op == "-":
            operand = rng.randint(1, min(MAX_OPERAND, value))
        else:
            operand = rng.randint(2, min(5, MAX_VALUE // value))
        steps.append((op, operand))
        value = _apply(value, op, operand)
    return start, steps


def make_problem(start: int, steps: list[tuple[str, int]], *, source: str, index: int) -> Problem:
    """Build the Problem (question, gold answer, worked solution) for one chain."""
    if not steps:
        raise ValueError("steps: expected at least one (op, operand) pair, got none")
    words = " ".join(_WORDS[op].format(b=b) for op, b in steps)
    question = f"Start with {start}. {words}"
    lines, value = [], start
    for op, operand in steps:
        new_value = _apply(value, op, operand)
        lines.append(f"{value}{op}{operand}={new_value}")
        value = new_value
    lines.append(f"\\boxed{{{value}}}")
    return Problem(
        id=f"tiny/{source}/{index}",
        question=question,
        answer=str(value),
        solution="\n".join(lines),
        source=source,
        tier=len(steps),
        meta={"start": start, "steps": [list(s) for s in steps]},
    )


def collect_problems(num: int, draw, *, source: str, split: str, unique: bool,
                     attempts_per_problem: int = 200) -> list[Problem]:
    """`num` problems from `draw(index) -> Problem | None` on one side of the train/eval split.

    A drawn problem is kept iff its question is on `split`'s side (`_is_eval_question`) and, with
    `unique`, not drawn before. Shared by every tiny task, so all split questions the same way.
    """
    if num < 0:
        raise ValueError(f"num: expected a non-negative count, got {num}")
    problems, seen = [], set()
    attempts = 0
    while len(problems) < num:
        attempts += 1
        if attempts > attempts_per_problem * (num + 10):
            raise ValueError(f"num: cannot draw {num} distinct {source} problems; too many")
        problem = draw(len(problems))
        if problem is None:
            continue
        if _is_eval_question(problem.question) != (split == "eval"):
            continue
        if unique and problem.question in seen:
            continue
        seen.add(problem.question)
        problems.append(problem)
    return problems


def _generate(num: int, tiers: tuple[int, ...], *, seed: int, source: str, split: str,
              unique: bool) -> list[Problem]:
    rng = random.Random(f"{source}:{seed}")

    def draw(index: int) -> Problem:
        start, steps = _sample_chain(rng, rng.choice(tiers))
        return make_problem(start, steps, source=source, index=index)

    return collect_problems(num, draw, source=source, split=split, unique=unique)


def train_pool(num: int = 4096, *, seed: int = 0, tiers: tuple[int, ...] = TRAIN_TIERS) -> list[Problem]:
    """Training prompts (the DeepMath stand-in): `num` distinct problems, tiers mixed uniformly."""
    return _generate(num, tiers, seed=seed, source="train", split="train", unique=True)


def train_stream(num: int, *, seed: int, tiers: tuple[int, ...] = TRAIN_TIERS) -> list[Problem]:
    """Pretraining data: `num` training-side problems (repeats allowed), never an eval question."""
    return _generate(num, tiers, seed=seed, source="pretrain", split="train", unique=False)


def eval_sets(num_per_set: int = 100, *, seed: int = 0) -> dict[str, list[Problem]]:
    """Held-out sets of increasing difficulty: `chain2`..`chain5` (n operations each)."""
    return {
        name: _generate(num_per_set, (tier,), seed=seed, source=name, split="eval", unique=True)
        for name, tier in EVAL_TIERS.items()
    }


def format_prompt(problem: Problem) -> str:
    """Plain-text prompt the tiny models are trained on (no chat template)."""
    return f"{problem.question}\n"


def format_target(problem: Problem) -> str:
    """Supervised target text: the worked solution (the tokenizer appends EOS)."""
    if problem.solution is None:
        raise ValueError(f"problem {problem.id}: expected a worked solution, got None")
    return problem.solution


def corpus(num: int = 2000, *, seed: int = 0) -> list[str]:
    """Prompt+solution texts that the tiny tokenizer is trained on."""
    return [format_prompt(p) + format_target(p) for p in train_stream(num, seed=seed)]


# ---------------------------------------------------------------------------------------------
# error diagnosis (the paper's hand-written "Error type" of Tables 9-12; used by scope_lib.studies.recovery)

_STEP_LINE = re.compile(r"^(\d+)([+\-*])(\d+)=(\d+)$")


class ChainError(NamedTuple):
    line: int  # 0-based index of the first wrong line; a prefix holds it iff it has > line newlines
    kind: str  # one of CHAIN_ERROR_KINDS
    detail: str  # where, with the offending text

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})"


CHAIN_ERROR_KINDS = ("wrong start value", "carried a wrong value", "wrong operation", "arithmetic slip",
                     "malformed line", "missing steps", "extra steps", "boxed answer differs", "no final answer")


def first_chain_error(problem: Problem, text: str) -> ChainError | None:
    """Where and how an arithmetic-chain solution first goes wrong.

    None for a problem without chain steps (`problem.meta["steps"]`, i.e. not the tiny task)
    or for a text without an error. Each line `a op b = c` is checked in order: `a` against
    the start value or the previous result, `op b` against the problem, then `c = a op b`.
    """
    steps = problem.meta.get("steps")
    if not steps:
        return None
    lines = text.split("\n")
    value = problem.meta["start"]
    for k, (op, operand) in enumerate(steps):
        line = lines[k].strip() if k < len(lines) else ""
        where = f"step {k + 1}: {line[:30]!r}"
        match = _STEP_LINE.match(line)
        if match is None:
            return ChainError(k, "missing steps" if line.startswith("\\boxed") else "malformed line", where)
        a, written_op, b, c = int(match[1]), match[2], int(match[3]), int(match[4])
        if a != value:
            return ChainError(k, "wrong start value" if k == 0 else "carried a wrong value", where)
        if (written_op, b) != (op, operand):
            return ChainError(k, "wrong operation", where)
        if _apply(a, op, b) != c:
            return ChainError(k, "arithmetic slip", where)
        value = c
    final = lines[len(steps)].strip() if len(lines) > len(steps) else ""
    where = f"after step {len(steps)}: {final[:30]!r}"
    if not final.startswith("\\boxed"):
        return ChainError(len(steps), "extra steps" if _STEP_LINE.match(final) else "no final answer", where)
    if final != f"\\boxed{{{value}}}":
        return ChainError(len(steps), "boxed answer differs", f"last result {value}, {where}")
    return None


first_error = first_chain_error  # the name every tiny task gives its error diagnosis (scope_lib.worlds.routes too)
