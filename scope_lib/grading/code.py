"""Code checking: does a model's program pass a problem's hidden tests? (`verify.is_correct` for code)

The binary reward `r_i` of a code rollout, as `scope_lib.verify` gives it for math: the program
is taken from the response, run in the sandbox (`scope_lib.grading.sandbox`) against the tests, and
counted correct only when the sandbox's supervisor reports that every test passed.

Tests come in the three styles the benchmarks use (`CodeTests`):
- `stdio`: input/expected-output pairs (Codeforces from TACO, LiveCodeBench's AtCoder and
  Codeforces problems). A fresh run per case, `timeout` seconds each, stopping at the first
  failure; outputs compared by `outputs_match` (LiveCodeBench's line and number rule, made
  whitespace-insensitive within a line; Codeforces adds a float tolerance).
- `call`: arguments and expected return value (LiveCodeBench's LeetCode problems, TACO's
  call-based ones): `f(*args) == expected`, `f` a function or a method of `Solution()`; a
  returned tuple counts as a list (LiveCodeBench), and TACO also accepts `expected[0]`.
- `check`: HumanEval's `check(candidate)` assertions, `timeout` for the whole check.

A problem carries its tests as `Problem.answer` (JSON, `CodeTests.to_json()`), so code problems
travel through the same plumbing as math answers.

Usage:
    tests = CodeTests(kind="stdio", cases=(("1 2\\n", "3\\n"),), timeout=6)
    is_correct("```python\\na, b = map(int, input().split())\\nprint(a + b)\\n```", tests)  # True
    grade_batch(responses, tests_per_response, workers=2)                                  # list[bool]

Errors: a malformed test spec raises ValueError naming the field or case; a test whose own
code is broken (HumanEval `check` that does not compile) raises ValueError after the run; a
program that does not compile is simply incorrect.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from scope_lib.grading import sandbox
from scope_lib.grading.sandbox import JudgeReport, Limits, outputs_match
from scope_lib.grading.sandbox_wire import _decode, _encode

__all__ = ["CodeTests", "extract_code", "extract_program", "entry_point_of", "EXTRACTORS", "grade", "grade_many", "is_correct", "grade_batch",
           "outputs_match", "Limits", "JudgeReport"]

Kind = Literal["stdio", "call", "check"]
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


# ---------------------------------------------------------------------------------------------
# the tests of one problem


@dataclass(frozen=True)
class CodeTests:
    """The hidden tests of one code problem. Validated on construction: a malformed case raises
    ValueError naming it."""

    kind: Kind
    cases: tuple = ()  # stdio: (input, expected output) strings; call: (args list, expected value)
    timeout: float = 6.0  # seconds per case (stdio, call) or for the whole check (LiveCodeBench: 6, HumanEval: 3)
    fn_name: str | None = None  # call: the function, or method of class Solution, to call
    compare: Literal["lcb", "taco"] = "lcb"  # call: "taco" also accepts expected[0] when expected is a list
    float_tolerance: float | None = None  # stdio: numbers within this relative error match (None: exact)
    test: str | None = None  # check: code defining check(candidate)
    prelude: str = ""  # check: trusted code run before `test` (HumanEval's prompt: helper functions)
    entry_point: str | None = None  # check: the function handed to check()
    program_prelude: str = ""  # prepended to the program (LiveCodeBench's star imports)
    meta: dict = field(default_factory=dict, compare=False)  # provenance, never sent to the sandbox

    def __post_init__(self):
        if self.kind not in ("stdio", "call", "check"):
            raise ValueError(f"tests.kind: expected 'stdio', 'call' or 'check', got {self.kind!r}")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not self.timeout > 0 \
                or not math.isfinite(self.timeout):
            raise ValueError(f"tests.timeout: expected a positive number of seconds, got {self.timeout!r}")
        if not isinstance(self.program_prelude, str):
            raise ValueError(f"tests.program_prelude: expected str, got {type(self.program_prelude).__name__}")
        object.__setattr__(self, "cases", tuple(tuple(c) if isinstance(c, (list, tuple)) else c for c in self.cases))
        getattr(self, f"_validate_{self.kind}")()

    def _validate_stdio(self) -> None:
        if not self.cases:
            raise ValueError("tests.cases: a stdio test needs at least one (input, output) case, got none")
        for index, case in enumerate(self.cases):
            if not (isinstance(case, tuple) and len(case) == 2 and all(isinstance(part, str) for part in case)):
                raise ValueError(f"tests.cases[{index}]: expected an (input, expected output) pair of strings, "
                                 f"got {_short(case)}")
        tolerance = self.float_tolerance
        if tolerance is not None and (isinstance(tolerance, bool) or not isinstance(tolerance, (int, float))
                                      or not 0 <= tolerance < 1):
            raise ValueError(f"tests.float_tolerance: expected None or a number in [0, 1), got {tolerance!r}")

    def _validate_call(self) -> None:
        if not isinstance(self.fn_name, str) or not _IDENTIFIER.match(self.fn_name):
            raise ValueError(f"tests.fn_name: expected a Python identifier, got {self.fn_name!r}")
        if self.compare not in ("lcb", "taco"):
            raise ValueError(f"tests.compare: expected 'lcb' or 'taco', got {self.compare!r}")
        if not self.cases:
            raise ValueError("tests.cases: a call test needs at least one (args, expected) case, got none")
        for index, case in enumerate(self.cases):
            if not (isinstance(case, tuple) and len(case) == 2 and isinstance(case[0], (list, tuple))):
                raise ValueError(f"tests.cases[{index}]: expected an (args list, expected value) pair, got {_short(case)}")
            try:
                _encode(list(case[0]))
                _encode(case[1])
            except (TypeError, ValueError) as error:
                raise ValueError(f"tests.cases[{index}]: not plain data: {error}") from None

    def _validate_check(self) -> None:
        if not isinstance(self.test, str) or "def check" not in self.test:
            raise ValueError(f"tests.test: expected code that defines check(candidate), got {_short(self.test)}")
        if not isinstance(self.prelude, str):
            raise ValueError(f"tests.prelude: expected str, got {type(self.prelude).__name__}")
        if not isinstance(self.entry_point, str) or not _IDENTIFIER.match(self.entry_point):
            raise ValueError(f"tests.entry_point: expected a Python identifier, got {self.entry_point!r}")

    # -- wire formats -----------------------------------------------------------------------

    def spec(self) -> dict:
        """What the sandbox's supervisor receives (see `sandbox.judge`)."""
        if self.kind == "stdio":
            return {"kind": "stdio", "cases": [list(c) for c in self.cases], "float_tolerance": self.float_tolerance}
        if self.kind == "call":
            return {"kind": "call", "fn_name": self.fn_name, "compare": self.compare,
                    "cases": [[_encode(list(args)), _encode(expected)] for args, expected in self.cases]}
        return {"kind": "check", "prelude": self.prelude, "test": self.test, "entry_point": self.entry_point}

    def to_json(self) -> str:
        """JSON for `Problem.answer`. Call-test values go tagged, so tuples and floats survive."""
        data = {"kind": self.kind, "timeout": self.timeout}
        if self.kind == "call":
            data.update(fn_name=self.fn_name, compare=self.compare,
                        cases=[[_encode(list(args)), _encode(expected)] for args, expected in self.cases])
        elif self.kind == "stdio":
            data.update(cases=[list(c) for c in self.cases], float_tolerance=self.float_tolerance)
        else:
            data.update(test=self.test, prelude=self.prelude, entry_point=self.entry_point)
        if self.program_prelude:
            data["program_prelude"] = self.program_prelude
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> CodeTests:
        try:
            data = json.loads(text)
        except (TypeError, ValueError) as error:
            raise ValueError(f"tests: expected the JSON of CodeTests.to_json(), got {_short(text)} ({error})") from None
        if not isinstance(data, dict):
            raise ValueError(f"tests: expected a JSON object, got {_short(text)}")
        known = {"kind", "timeout", "cases", "fn_name", "compare", "float_tolerance", "test", "prelude", "entry_point",
                 "program_prelude"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"tests: unknown field(s) {unknown}; expected some of {sorted(known)}")
        if data.get("kind") == "call":
            try:
                data["cases"] = [(_decode(args), _decode(expected)) for args, expected in data.get("cases", [])]
            except (TypeError, ValueError) as error:
                raise ValueError(f"tests.cases: malformed tagged value ({error})") from None
        return cls(**data)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_tests(tests: CodeTests | str) -> CodeTests:
    if isinstance(tests, CodeTests):
        return tests
    if isinstance(tests, str):
        return CodeTests.from_json(tests)
    raise ValueError(f"tests: expected CodeTests or its JSON, got {type(tests).__name__}")


# ---------------------------------------------------------------------------------------------
# the program inside a response

_FENCE = re.compile(r"^```[ \t]*([\w+.-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


_TOP_LEVEL_CODE = re.compile(r"(?:async[ \t]+def|def|class)[ \t]+\w|(?:import|from)[ \t]+[\w.]+|@\w")


def _defines(code: str, entry_point: str) -> bool:
    """Whether `code` has a `def entry_point(` (at any indentation: a method of `Solution` too)
    or a `class entry_point`."""
    name = re.escape(entry_point)
    return re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{name}[ \t]*\(|^[ \t]*class[ \t]+{name}\b", code,
                     re.MULTILINE) is not None


def _top_level_definitions(text: str) -> str:
    """The imports, decorators, functions and classes of unfenced text, each with its indented
    body, in order; prose and top-level calls are dropped (EvalPlus's sanitiser keeps the
    definitions too)."""
    kept, inside = [], False
    for line in text.splitlines():
        if line[:1] in (" ", "\t") or not line.strip():
            if inside:
                kept.append(line)
            continue
        inside = _TOP_LEVEL_CODE.match(line) is not None
        if inside:
            kept.append(line)
    return "\n".join(kept).strip("\n") + "\n" if kept else ""


def extract_code(response: str, entry_point: str | None = None) -> str | None:
    """The program in `response`, as real models answer: blocks tagged with a language other
    than Python are skipped.

    With an `entry_point` (the function HumanEval's check calls, the function or `Solution`
    method a call test calls): the last fenced block that defines it, so that a usage example
    after the function is not judged instead of it (LiveCodeBench and EvalPlus pick the code
    that defines the entry point as well); with no such block, the last block; with no fence at
    all, the top-level definitions of the response when they define it. Without an entry point
    (stdio programs): the last fenced block, as LiveCodeBench's `extract_code` takes it.
    None when no code is found."""
    if not isinstance(response, str):
        raise ValueError(f"response: expected str, got {type(response).__name__}")
    blocks = [body for language, body in _FENCE.findall(response)
              if language.lower() in ("", "python", "python3", "py", "py3")]
    if entry_point:
        defining = [body for body in blocks if _defines(body, entry_point)]
        if defining:
            return defining[-1]
        if not blocks and "```" not in response:
            code = _top_level_definitions(response)
            return code if _defines(code, entry_point) else None
    return blocks[-1] if blocks else None


def entry_point_of(tests: CodeTests) -> str | None:
    """The name the tests call: HumanEval's entry point, a call test's function (None for stdio)."""
    return tests.entry_point if tests.kind == "check" else tests.fn_name if tests.kind == "call" else None


def extract_program(response: str, tests: CodeTests, extract="code_block") -> str | None:
    """The program `extract` takes from `response` for `tests` ("code_block": `extract_code` with
    the tests' entry point; "raw": the whole response; a callable: response -> program | None)."""
    if extract == "code_block":
        return extract_code(response, entry_point_of(tests))
    return _extractor(extract)(response)


EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "code_block": extract_code,
    "raw": lambda response: response,  # the whole response is the program (the tiny world's style)
}


def _extractor(extract) -> Callable[[str], str | None]:
    if callable(extract):
        return extract
    if extract not in EXTRACTORS:
        raise ValueError(f"extract: expected one of {sorted(EXTRACTORS)} or a callable, got {extract!r}")
    return EXTRACTORS[extract]


# ---------------------------------------------------------------------------------------------
# grading


def grade(program: str, tests: CodeTests | str, *, limits: Limits | None = None, isolation: str = "bwrap") -> JudgeReport:
    """Judge one program (source code, not a response) against `tests`; the full report.

    Raises ValueError when the tests themselves are broken (status "test_error")."""
    if not isinstance(program, str):
        raise ValueError(f"program: expected str, got {type(program).__name__}")
    tests = _as_tests(tests)
    report = sandbox.judge(_with_prelude(program, tests), tests.spec(), tests.timeout, limits=limits, isolation=isolation)
    _raise_if_broken(report, tests)
    return report


def _with_prelude(program: str, tests: CodeTests) -> str:
    return (tests.program_prelude + "\n" + program) if tests.program_prelude else program


def _raise_if_broken(report: JudgeReport, tests: CodeTests) -> None:
    """grade()'s error for a test that is itself broken (the sandbox's status "test_error")."""
    if report.status == "test_error":
        where = f" ({tests.meta.get('id')})" if tests.meta.get("id") else ""
        raise ValueError(f"tests{where}: the test itself is broken: {report.detail}")


def grade_many(programs: Sequence[str], tests: Sequence[CodeTests | str], *, workers: int | None = None,
               limits: Limits | None = None, isolation: str = "bwrap") -> list[JudgeReport]:
    """`[grade(p, t) for p, t in zip(programs, tests)]` on `workers` threads (default: one per
    CPU). Each sandbox is its own process tree, so threads give real parallelism.

    With `isolation="bwrap"` the programs are grouped by their problem's timeout and each group
    is judged with `sandbox.judge_many` (one batch sandbox per chunk of up to `_BATCH_SIZE`
    programs instead of one sandbox per program; the chunks, of at least `_MIN_CHUNK` programs
    where the group has that many, shared out over the threads); the reports
    are judge()'s, in the order of `programs`. A broken test raises the same ValueError as
    grade(), for the first such program in order, after the batch has run."""
    if len(programs) != len(tests):
        raise ValueError(f"tests: expected {len(programs)} items like programs, got {len(tests)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers: expected a positive int or None, got {workers!r}")
    parsed = [_as_tests(t) for t in tests]  # malformed tests fail here, before anything runs
    if not programs:
        return []
    workers = min(workers or os.cpu_count() or 1, len(programs))
    if isolation == "bwrap":
        return _grade_batched(programs, parsed, workers=workers, limits=limits, isolation=isolation)
    if workers == 1:
        return [grade(p, t, limits=limits, isolation=isolation) for p, t in zip(programs, parsed)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda pair: grade(pair[0], pair[1], limits=limits, isolation=isolation), zip(programs, parsed)))


# Programs per batch in grade_many (judge_many's default). A sandbox launch (bwrap, the
# interpreter, the inside files' imports) costs about as much CPU as ten programs judged in it;
# judge_many keeps its sandboxes between batches, and 64 makes a code-world step's 128 programs
# one batch per worker of a 2-core machine.
_BATCH_SIZE = 64
# The least a worker is given of a group: each chunk is a batch of its own, in a second sandbox
# (launched, about ten programs' CPU, where none is kept yet), so 16 programs are not split in 8 and 8.
_MIN_CHUNK = 32


def _grade_batched(programs: Sequence[str], parsed: list[CodeTests], *, workers: int, limits: Limits | None,
                   isolation: str) -> list[JudgeReport]:
    """grade_many's bwrap path: what `[grade(p, t) ...]` returns or raises, judged with
    `sandbox.judge_many`, one call per chunk of programs that share a timeout."""
    errors: dict[int, Exception] = {}
    # limits and isolation are the same for the whole call, so the timeout alone tells groups apart
    groups: dict[float, list[int]] = {}  # the timeout -> the programs judged with it, in order
    for index, (program, tests) in enumerate(zip(programs, parsed)):
        if not isinstance(program, str):  # grade()'s error, raised below in order like any other
            errors[index] = ValueError(f"program: expected str, got {type(program).__name__}")
            continue
        groups.setdefault(float(tests.timeout), []).append(index)
    chunks: list[tuple[float, list[int]]] = []
    for timeout, members in groups.items():
        parts = max(1, min(workers, len(members) // _MIN_CHUNK))  # every thread gets a share of a large group
        parts = max(parts, -(-len(members) // _BATCH_SIZE))  # and no chunk is over _BATCH_SIZE
        size = -(-len(members) // parts)
        chunks += [(timeout, members[first:first + size]) for first in range(0, len(members), size)]

    def judge_chunk(chunk: tuple[float, list[int]]) -> list[JudgeReport]:
        timeout, members = chunk
        sources = [_with_prelude(programs[i], parsed[i]) for i in members]
        return sandbox.judge_many(sources, [parsed[i].spec() for i in members], timeout, limits=limits,
                                  isolation=isolation, batch_size=_BATCH_SIZE)

    if workers == 1 or len(chunks) == 1:
        judged = [judge_chunk(chunk) for chunk in chunks]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(chunks)), thread_name_prefix="sandbox") as pool:
            judged = list(pool.map(judge_chunk, chunks))
    reports: list[JudgeReport | None] = [None] * len(programs)
    for (_, members), chunk_reports in zip(chunks, judged):
        for i, report in zip(members, chunk_reports):
            reports[i] = report
    for index, report in enumerate(reports):
        if index in errors:
            raise errors[index]
        _raise_if_broken(report, parsed[index])
    return reports  # type: ignore[return-value]


def is_correct(response: str, tests: CodeTests | str, *, extract="code_block", limits: Limits | None = None) -> bool:
    """True iff the program in `response` passes every test. `extract`: "code_block" (the block
    that defines the tests' entry point, else the last fenced block: `extract_code`), "raw" (the whole response), or a callable response -> program | None. No
    program, a program that does not compile, crashes, times out or prints a wrong answer: False."""
    tests = _as_tests(tests)
    if not isinstance(response, str):
        raise ValueError(f"response: expected str, got {type(response).__name__}")
    program = extract_program(response, tests, extract)
    if program is None or not program.strip():
        return False
    return grade(program, tests, limits=limits).correct


def grade_batch(responses: Sequence[str], tests: Sequence[CodeTests | str], *, extract="code_block",
                workers: int | None = None, limits: Limits | None = None) -> list[bool]:
    """`[is_correct(r, t) for r, t in zip(responses, tests)]`, graded in parallel."""
    if len(responses) != len(tests):
        raise ValueError(f"tests: expected {len(responses)} items like responses, got {len(tests)}")
    _extractor(extract)  # an unknown name fails before anything runs
    tests = [_as_tests(t) for t in tests]  # every spec is checked, also those of responses without a program
    for index, response in enumerate(responses):
        if not isinstance(response, str):
            raise ValueError(f"responses[{index}]: expected str, got {type(response).__name__}")
    programs = [extract_program(r, t, extract) for r, t in zip(responses, tests)]
    runnable = [i for i, p in enumerate(programs) if p is not None and p.strip()]
    verdicts = [False] * len(responses)
    reports = grade_many([programs[i] for i in runnable], [tests[i] for i in runnable], workers=workers, limits=limits)
    for i, report in zip(runnable, reports):
        verdicts[i] = report.correct
    return verdicts

