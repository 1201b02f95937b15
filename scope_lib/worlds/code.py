"""The tiny code task: the student writes a short Python function, judged by hidden tests in
the sandbox (the tiny world's stand-in for the paper's code benchmarks, Table 2).

A problem describes a chain of operations on an input `x`, like the math task's chains
(`scope_lib.worlds.chain`), with two more operations whose effect depends on the input: halving
(floor division) and a parity branch. The program applies them in order, one line each:

    Start with x. Add 5. Halve it. If odd, add 3. Multiply by 2.
    def f(x):
     x=x+5
     x=x//2
     if x%2:x=x+3
     x=x*2
     return x

The hidden tests (`grading.code.CodeTests`, kind "call") call `f` on `NUM_TESTS` inputs and
compare with the reference values, so a program that drops the branch can pass some inputs
and still be judged wrong: the verdict needs every case. Unlike the math task, the model does
no arithmetic: the difficulty is writing every operation, in order, with its operand, in a
program that runs. The number of operations is the difficulty tier; the training pool mixes
tiers 1..5 and the eval sets `code2`..`code5` hold one tier each. Train, validation and eval
questions are split by the same content hash as the math task (`worlds.chain.collect_problems`).

Every problem's `source` is `SOURCE` ("tiny_code", one of `grading.CODE_SOURCES`), so the
code verifier grades it; its `answer` is the JSON of its tests.

Public: `SOURCE`, `TRAIN_TIERS`, `EVAL_TIERS`, `NUM_TESTS`, `make_problem`, `train_pool`,
`train_stream`, `validation_set`, `eval_sets`, `format_prompt`, `format_target`, `corpus`,
`tests_of`, `first_error`.
"""

from __future__ import annotations

import random
import re
from typing import NamedTuple

from scope_lib.problem import Problem
from scope_lib.worlds.chain import collect_problems
from scope_lib.grading.code import CodeTests

SOURCE = "tiny_code"
TRAIN_TIERS = (1, 2, 3, 4, 5)
EVAL_TIERS = {"code2": 2, "code3": 3, "code4": 4, "code5": 5}
NUM_TESTS = 4  # hidden inputs per problem
TEST_INPUTS = range(0, 40)  # where the hidden inputs are drawn from
TEST_TIMEOUT = 2.0  # seconds per case in the sandbox (a straight-line program takes microseconds)
OPS = ("+", "-", "*", "half", "odd+")

_WORDS = {"+": "Add {b}.", "-": "Subtract {b}.", "*": "Multiply by {b}.", "half": "Halve it.",
          "odd+": "If odd, add {b}."}
_LINES = {"+": "x=x+{b}", "-": "x=x-{b}", "*": "x=x*{b}", "half": "x=x//2", "odd+": "if x%2:x=x+{b}"}


def apply(value: int, op: str, operand: int) -> int:
    """One operation on an int, as the reference program computes it."""
    if op == "+":
        return value + operand
    if op == "-":
        return value - operand
    if op == "*":
        return value * operand
    if op == "half":
        return value // 2
    if op == "odd+":
        return value + operand if value % 2 else value
    raise ValueError(f"op: expected one of {OPS}, got {op!r}")


def _sample_steps(rng: random.Random, num_ops: int) -> list[tuple[str, int]]:
    steps = []
    for _ in range(num_ops):
        op = rng.choice(OPS)
        operand = {"+": lambda: rng.randint(1, 30), "-": lambda: rng.randint(1, 30), "*": lambda: rng.randint(2, 5),
                   "half": lambda: 0, "odd+": lambda: rng.randint(1, 9)}[op]()
        steps.append((op, operand))
    return steps


def reference(steps, x: int) -> int:
    for op, operand in steps:
        x = apply(x, op, operand)
    return x


def make_problem(steps: list[tuple[str, int]], inputs: list[int], *, split_name: str, index: int) -> Problem:
    """The Problem for one chain of operations: question, reference program, hidden tests on `inputs`."""
    if not steps:
        raise ValueError("steps: expected at least one (op, operand) pair, got none")
    if not inputs:
        raise ValueError("inputs: expected at least one test input, got none")
    question = "Start with x. " + " ".join(_WORDS[op].format(b=b) for op, b in steps)
    program = "\n".join(["def f(x):", *(" " + _LINES[op].format(b=b) for op, b in steps), " return x"])
    tests = CodeTests(kind="call", fn_name="f", cases=tuple(([x], reference(steps, x)) for x in inputs),
                      timeout=TEST_TIMEOUT)
    return Problem(id=f"{SOURCE}/{split_name}/{index}", question=question, answer=tests.to_json(), solution=program,
                   source=SOURCE, tier=len(steps),
                   meta={"set": split_name, "steps": [list(s) for s in steps], "inputs": list(inputs)})


def _generate(num: int, tiers: tuple[int, ...], *, seed: int, name: str, split: str, unique: bool) -> list[Problem]:
    rng = random.Random(f"code:{name}:{seed}")

    def draw(index: int) -> Problem:
        steps = _sample_steps(rng, rng.choice(tiers))
        inputs = sorted(rng.sample(TEST_INPUTS, NUM_TESTS))
        return make_problem(steps, inputs, split_name=name, index=index)

    return collect_problems(num, draw, source=name, split=split, unique=unique)


def train_pool(num: int = 4096, *, seed: int = 0, tiers: tuple[int, ...] = TRAIN_TIERS) -> list[Problem]:
    """Training prompts: `num` distinct training-side problems, tiers mixed uniformly."""
    return _generate(num, tiers, seed=seed, name="train", split="train", unique=True)


def train_stream(num: int, *, seed: int, tiers: tuple[int, ...] = TRAIN_TIERS) -> list[Problem]:
    """Pretraining data: `num` training-side problems (repeats allowed), never an eval question."""
    return _generate(num, tiers, seed=seed, name="pretrain", split="train", unique=False)


def validation_set(num: int = 200, *, seed: int = 0, tiers: tuple[int, ...] = TRAIN_TIERS) -> list[Problem]:
    """Held-out training-side problems (their own stream, never an eval question): for stopping
    pretraining at an accuracy target and for choosing learning rates."""
    return _generate(num, tiers, seed=seed, name="validation", split="train", unique=True)


def eval_sets(num_per_set: int = 100, *, seed: int = 0) -> dict[str, list[Problem]]:
    """Held-out sets `code2`..`code5`, one operation count each."""
    return {name: _generate(num_per_set, (tier,), seed=seed, name=name, split="eval", unique=True)
            for name, tier in EVAL_TIERS.items()}


def format_prompt(problem: Problem) -> str:
    """The plain-text prompt the tiny models see: the question and a newline."""
    return f"{problem.question}\n"


def format_target(problem: Problem) -> str:
    """The supervised target: the reference program (the tokenizer appends EOS)."""
    if problem.solution is None:
        raise ValueError(f"problem {problem.id}: expected a reference program, got None")
    return problem.solution


def corpus(num: int = 2000, *, seed: int = 0) -> list[str]:
    """Prompt + program texts the tokenizer is trained on."""
    return [format_prompt(p) + format_target(p) for p in train_stream(num, seed=seed)]


def tests_of(problem: Problem):
    """The problem's hidden tests (`grading.code.CodeTests`)."""
    return CodeTests.from_json(problem.answer)


# ---------------------------------------------------------------------------------------------
# error diagnosis (what a wrong program got wrong first; the verdict itself is the sandbox's)

CODE_ERROR_KINDS = ("bad header", "wrong operation", "missing steps", "extra steps", "no return")


class CodeError(NamedTuple):
    line: int  # 0-based index of the first wrong line
    kind: str  # one of CODE_ERROR_KINDS
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} ({self.detail})"


_RETURN = re.compile(r"^ return x\s*$")


def first_error(problem: Problem, text: str) -> CodeError | None:
    """Where a program first departs from the reference, line by line; None when it matches.

    A diagnosis of the text only: a program written another way may still pass the tests."""
    steps = problem.meta.get("steps")
    if not steps:
        return None
    lines = text.split("\n")
    if lines[0].strip() != "def f(x):":
        return CodeError(0, "bad header", repr(lines[0][:30]))
    for k, (op, operand) in enumerate(steps, start=1):
        line = lines[k] if k < len(lines) else ""
        if line == " " + _LINES[op].format(b=operand):
            continue
        kind = "missing steps" if _RETURN.match(line) or not line else "wrong operation"
        return CodeError(k, kind, f"step {k}: {line[:30]!r}")
    end = len(steps) + 1
    final = lines[end] if end < len(lines) else ""
    if not _RETURN.match(final):
        return CodeError(end, "extra steps" if final.startswith(" x=") or final.startswith(" if") else "no return",
                         f"after step {len(steps)}: {final[:30]!r}")
    return None
