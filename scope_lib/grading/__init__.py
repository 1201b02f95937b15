"""One entry point for the binary reward r_i: which verifier grades a response, math or code.

`grade(kind, responses, problems)` is what evaluation (and training, for `reward.verifier`)
calls; it dispatches on `kind`:

- `"math"`: `scope_lib.verify.grade_batch` against each problem's `answer` (the gold final
  answer, compared to the response's last `\\boxed{}`).
- `"code"`: `scope_lib.grading.code.grade_batch`: the response's fenced ```python block that
  defines the problem's entry point (else its last block; `grading.code.extract_code`) is run in the sandbox (`scope_lib.grading.sandbox`) against the problem's hidden tests, which a code
  problem carries as `Problem.answer` (the JSON of `grading.code.CodeTests`, written by the
  loaders of `scope_lib.worlds.code_benchmarks`). `CodeGrading` holds the sandbox settings the config's
  `reward` section sets (per-test timeout, memory, processes).

`responses[i]` is graded against `problems[i]`, so a problem's k samples list it k times (its
tests are parsed once, and identical responses to it are run once). Both verifiers refuse the
other's problems with a ValueError naming the problem instead of grading every response wrong:
a code problem (source one of `CODE_SOURCES`) under "math", an answer that is not test JSON
under "code". `kind_of(problems)` tells which verifier a set of problems needs.

    verdicts = grade("code", responses, [problems[g] for g in groups], code=CodeGrading(memory_mb=2048))
    verdicts = grade_config(cfg, responses, problems_per_response)   # cfg.reward decides
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from scope_lib.problem import Problem
from scope_lib.grading.code import CodeTests, extract_program, EXTRACTORS, grade_batch as code_grade_batch, grade_many
from scope_lib.grading.sandbox import Limits
from scope_lib.verify import grade_batch

__all__ = ["KINDS", "CODE_SOURCES", "CodeGrading", "kind_of", "grade", "grade_config", "code_reports",
           "code_instruction", "HUMANEVAL_INSTRUCTION", "PROGRAM_INSTRUCTION"]

KINDS = ("math", "code")
# Problem.source of every problem `scope_lib.worlds.code_benchmarks` loads (its benchmarks and TACO) and
# of the tiny code task (`scope_lib.worlds.code`).
CODE_SOURCES = ("humaneval", "codeforces", "livecodebench", "taco", "tiny_code")
# What the code verifier needs from a response: the program in a fenced block (the block that
# defines the entry point, else the last one: code_verify.extract_code). HumanEval's question is a function stub.
HUMANEVAL_INSTRUCTION = ("Complete the Python function above. Write the whole function, its signature included, "
                         "in one ```python code block.")
PROGRAM_INSTRUCTION = ("Solve the problem in Python 3. Put your complete solution in one ```python code block "
                       "at the end of your answer.")


def code_instruction(problem: Problem) -> str:
    """The instruction appended to a code problem's question in its prompt (world.format_prompt)."""
    return HUMANEVAL_INSTRUCTION if problem.source == "humaneval" else PROGRAM_INSTRUCTION


@dataclass(frozen=True)
class CodeGrading:
    """Sandbox settings of the code verifier (the config's `reward.code_*` fields)."""

    timeout_s: float = 0.0  # per test case (HumanEval: the whole check); 0 keeps each problem's own
    memory_mb: int = 1024  # address space of each sandboxed process (sandbox.Limits.memory_mb)
    max_processes: int = 16  # processes and threads of one program together (sandbox.Limits.max_processes)
    extract: str = "code_block"  # "code_block": the block defining the entry point, else the last; "raw": the whole response
    workers: int | None = None  # sandboxes run at once; None: one per CPU

    def __post_init__(self):
        if isinstance(self.timeout_s, bool) or not isinstance(self.timeout_s, (int, float)) or not self.timeout_s >= 0:
            raise ValueError(f"CodeGrading.timeout_s: expected seconds >= 0 (0: each problem's own), got {self.timeout_s!r}")
        for name in ("memory_mb", "max_processes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CodeGrading.{name}: expected a positive int, got {value!r}")
        if self.extract not in EXTRACTORS:
            raise ValueError(f"CodeGrading.extract: expected one of {sorted(EXTRACTORS)}, got {self.extract!r}")
        if self.workers is not None and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                         or self.workers < 1):
            raise ValueError(f"CodeGrading.workers: expected a positive int or None, got {self.workers!r}")

    @classmethod
    def from_config(cls, reward) -> CodeGrading:
        """From a config's `reward` section (scope_lib.config_schema.RewardConfig)."""
        return cls(timeout_s=reward.code_timeout_s, memory_mb=reward.code_memory_mb,
                   max_processes=reward.code_max_processes, extract=reward.code_extract)

    def limits(self):
        return Limits(memory_mb=self.memory_mb, max_processes=self.max_processes)


def _check_problems(responses: Sequence[str], problems: Sequence[Problem]) -> None:
    if len(responses) != len(problems):
        raise ValueError(f"problems: expected one per response ({len(responses)}), got {len(problems)}")
    for index, problem in enumerate(problems):
        if not isinstance(problem, Problem):
            raise ValueError(f"problems[{index}]: expected a scope_lib.problem.Problem, got {type(problem).__name__}")


def kind_of(problems: Sequence[Problem], where: str = "problems") -> str:
    """"code" when every problem comes from a code source (`CODE_SOURCES`), "math" when none
    does; a ValueError naming `where` for a mix or an empty list."""
    if not problems:
        raise ValueError(f"{where}: expected at least one problem")
    code = [p.source in CODE_SOURCES for p in problems]
    if all(code):
        return "code"
    if not any(code):
        return "math"
    first_code, first_math = code.index(True), code.index(False)
    raise ValueError(f"{where}: mixes code problems ({problems[first_code].id!r}) and math problems "
                     f"({problems[first_math].id!r}); one verifier grades a set")


def _code_tests(problems: Sequence[Problem], timeout_s: float) -> list:
    """Each problem's CodeTests (parsed once per distinct problem), the timeout overridden when > 0."""
    parsed: dict[int, object] = {}
    tests = []
    for index, problem in enumerate(problems):
        key = id(problem)
        if key not in parsed:
            try:
                one = CodeTests.from_json(problem.answer)
            except ValueError as error:
                raise ValueError(f"problems[{index}] ({problem.id!r}): its answer is not the JSON of code tests "
                                 f"(a math problem under the code verifier?): {error}") from None
            parsed[key] = dataclasses.replace(one, timeout=timeout_s) if timeout_s > 0 else one
        tests.append(parsed[key])
    return tests


def grade(kind: str, responses: Sequence[str], problems: Sequence[Problem], *, code: CodeGrading | None = None,
          math_timeout: float = 5.0) -> list[bool]:
    """Binary verdicts, `responses[i]` against `problems[i]`, by the `kind` verifier ("math" or "code").

    `code`: the sandbox settings for "code" (default CodeGrading()); `math_timeout`: seconds per
    math-verify comparison for "math"."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {KINDS}, got {kind!r}")
    _check_problems(responses, problems)
    if kind == "math":
        for index, problem in enumerate(problems):
            if problem.source in CODE_SOURCES:
                raise ValueError(f"problems[{index}] ({problem.id!r}) is a {problem.source} code problem; "
                                 "grade it with kind 'code' (reward.verifier: code)")
        return grade_batch(list(responses), [p.answer for p in problems], timeout=math_timeout)
    code = code or CodeGrading()
    tests = _code_tests(problems, code.timeout_s)
    # Identical responses to one problem are judged once: a group of rollouts or k evaluation
    # samples often repeats a program, and its verdict does not depend on how many copies were
    # sampled (a nondeterministic program's copies share its one verdict).
    slot: dict[tuple, int] = {}
    unique: list[int] = []
    for index, response in enumerate(responses):
        if not isinstance(response, str):
            raise ValueError(f"responses[{index}]: expected str, got {type(response).__name__}")
        key = (response, id(tests[index]))
        if key not in slot:
            slot[key] = len(unique)
            unique.append(index)
    verdicts = code_grade_batch([responses[i] for i in unique], [tests[i] for i in unique], extract=code.extract,
                                workers=code.workers, limits=code.limits())
    return [verdicts[slot[(r, id(tests[i]))]] for i, r in enumerate(responses)]


def grade_config(cfg, responses: Sequence[str], problems: Sequence[Problem]) -> list[bool]:
    """`grade` with the verifier and sandbox settings of a TrainConfig's `reward` section."""
    return grade(cfg.reward.verifier, responses, problems, code=CodeGrading.from_config(cfg.reward))


def code_reports(responses: Sequence[str], problems: Sequence[Problem], *, code: CodeGrading | None = None) -> list:
    """Per response, (program, sandbox report): the program the code verifier takes from it and
    the sandbox's `JudgeReport` on it; (None, None) when the response holds no program. The
    diagnostic twin of `grade(kind="code")`: its verdicts are `report is not None and report.correct`."""
    _check_problems(responses, problems)
    code = code or CodeGrading()
    tests = _code_tests(problems, code.timeout_s)
    programs = []
    for index, response in enumerate(responses):
        if not isinstance(response, str):
            raise ValueError(f"responses[{index}]: expected str, got {type(response).__name__}")
        program = extract_program(response, tests[index], code.extract)
        programs.append(program if program is not None and program.strip() else None)
    runnable = [i for i, p in enumerate(programs) if p is not None]
    reports = grade_many([programs[i] for i in runnable], [tests[i] for i in runnable], workers=code.workers,
                         limits=code.limits())
    out: list = [(None, None)] * len(responses)
    for i, report in zip(runnable, reports):
        out[i] = (programs[i], report)
    return out
