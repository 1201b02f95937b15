"""Real evaluation benchmarks (Table 1's eval sets, plus GSM8K for the `smol` scale).

Each benchmark is a registry entry: where its rows come from and one answer adapter that turns
a raw row into a `Problem` whose `answer` string `scope_lib.verify.is_correct` can grade.

Sources, in order:
1. a local folder holding `<name>/test.jsonl` (`path=`, else env `SCOPE_BENCHMARKS_DIR`), in
   the formats of the math-evaluation repositories' JSONL files (Qwen2.5-Math `evaluation/data`);
2. otherwise the public hub dataset through `datasets.load_dataset`, when `datasets` is
   installed and the hub reachable (it is not a dependency of this project).

The files are never copied into this repository. Adapters accept both the JSONL and the hub
field names (`problem`/`question`, minerva's hub `answer` column), since the hub copies use
different columns for the same problems.

Usage:
    problems = load_benchmark("math500", "/data/benchmarks", limit=50)
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from scope_lib.problem import Problem
from scope_lib.verify import extract_boxed

__all__ = ["BENCHMARKS", "REGISTRY", "Benchmark", "answer_text", "jsonl_rows", "load_benchmark", "benchmarks_dir",
           "problem_from_row"]


# ---------------------------------------------------------------------------------------------
# answer adapters: raw row -> gold answer string


def _question(row: dict) -> str:
    for key in ("problem", "question"):
        if isinstance(row.get(key), str) and row[key].strip():
            return row[key]
    raise KeyError("problem")


def _strip_dollars(text: str) -> str:
    # OlympiadBench writes several answers as "$(3,2)$,$(-3,2)$": the inner "$,$" is a comma.
    text = re.sub(r"\$\s*,\s*\$", ", ", text.strip())
    return text.strip().strip("$").strip()


def _shown(value) -> str:
    """A row's value as the file writes it (null, not None), cut short for error messages."""
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def answer_text(value, field: str = "answer") -> str:
    """A gold answer as text: a non-empty string, or a finite number (27.0 -> "27", AMC23 stores
    answers as floats). Raises TypeError for anything else: null, NaN, a bool, a list or a dict
    would become the gold strings "None", "nan", "True", "[1, 2]", "{'a': 1}", and the grader
    would then accept `\\boxed{None}`."""
    if value is None:
        raise TypeError(f"{field}: expected a string or number, got null")
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TypeError(f"{field}: expected a string or number, got {type(value).__name__} {_shown(value)}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{field}: expected a finite number, got {value!r}")
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value).strip()
    if not text:
        raise TypeError(f"{field}: expected a non-empty answer, got {value!r}")
    return text


def _answer_field(row: dict) -> str:
    """AIME and MATH-500: the `answer` column as is (AIME24's hub copy stores ints)."""
    return answer_text(row["answer"])


def _amc23_answer(row: dict) -> str:
    """AMC23 stores 27.0 for 27; a float answer must be an integer (AMC answers are)."""
    value = row["answer"]
    if isinstance(value, float) and math.isfinite(value) and not value.is_integer():
        raise TypeError(f"answer: expected an integer-valued AMC answer, got {value!r}")
    return answer_text(value)


def _minerva_answer(row: dict) -> str:
    # The JSONL has no answer column: the gold is the last \boxed{} of the solution. The hub copy
    # (math-ai/minervamath) has an `answer` column instead.
    if row.get("answer") is not None:
        return answer_text(row["answer"])
    if not isinstance(row.get("solution"), str):
        raise TypeError(f"solution: expected a string ending in \\boxed{{answer}}, got {_shown(row.get('solution'))}")
    boxed = extract_boxed(row["solution"])
    if boxed is None or not boxed.strip():
        raise KeyError("\\boxed{} in solution")
    return boxed.strip()


def _olympiad_answer(row: dict) -> str:
    final = row["final_answer"]
    items = final if isinstance(final, list) else [final]
    if not items:
        raise KeyError("final_answer (empty list)")
    answers = [_strip_dollars(answer_text(item, "final_answer")) for item in items]
    if not all(answers):  # "$$" strips to nothing
        raise TypeError(f"final_answer: expected non-empty answers, got {_shown(final)}")
    return ", ".join(answers)


def _gsm8k_answer(row: dict) -> str:
    text = row["answer"]
    if not isinstance(text, str):
        raise TypeError(f"answer: expected a string holding '#### <answer>', got {_shown(text)}")
    if "####" not in text:
        raise KeyError("'####' in answer")
    return text.rsplit("####", 1)[1].strip().replace(",", "")


def _solution(name: str, row: dict, answer: str) -> str | None:
    solution = row.get("solution")
    if isinstance(solution, list):  # OlympiadBench: one or more worked solutions
        solution = solution[0] if solution else None
    if name == "gsm8k":
        # GSM8K's worked answer, calculator annotations <<a*b=c>> dropped, ending in \boxed{}
        # like every other solution (the KD baseline trains on these).
        body = re.sub(r"<<[^>]*>>", "", row["answer"].rsplit("####", 1)[0]).strip()
        solution = f"{body}\nThe final answer is $\\boxed{{{answer}}}$."
    return solution if isinstance(solution, str) and solution.strip() else None


# ---------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class Benchmark:
    name: str
    rows: int  # rows of the reference test set (the upstream JSONL)
    answer: Callable[[dict], str]  # the answer adapter
    hub: tuple[str, str | None, str]  # (dataset id, config, split) for online loading
    id_keys: tuple[str, ...] = ("id", "idx", "unique_id")  # row id, else the line number


# open-r1 style registry: name -> how to read it. Hub ids follow the benchmarks README.
REGISTRY: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("aime24", 30, _answer_field, ("HuggingFaceH4/aime_2024", None, "train")),
        Benchmark("aime25", 30, _answer_field, ("yentinglin/aime_2025", None, "train")),
        Benchmark("amc23", 40, _amc23_answer, ("math-ai/amc23", None, "test")),
        Benchmark("math500", 500, _answer_field, ("HuggingFaceH4/MATH-500", None, "test"), ("unique_id",)),
        Benchmark("minerva_math", 272, _minerva_answer, ("math-ai/minervamath", None, "test")),
        Benchmark("olympiadbench", 675, _olympiad_answer, ("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train")),
        Benchmark("gsm8k", 1319, _gsm8k_answer, ("openai/gsm8k", "main", "test")),
    )
}
BENCHMARKS: tuple[str, ...] = tuple(REGISTRY)

# Fields that become Problem attributes; everything else in a row goes to `meta`.
_CORE_FIELDS = {"problem", "question", "answer", "final_answer", "solution"}


def problem_from_row(name: str, row: dict, index: int) -> Problem:
    """One raw row of benchmark `name` (its `index`-th) as a Problem. Raises KeyError/TypeError
    on a missing or malformed field (the loader turns those into ValueError with file:line)."""
    spec = REGISTRY[name]
    if not isinstance(row, dict):
        raise TypeError(f"row: expected a JSON object, got {type(row).__name__}")
    answer = spec.answer(row)
    if not answer:
        raise KeyError("answer (empty)")
    row_id = next((row[k] for k in spec.id_keys if row.get(k) is not None), index)
    meta = {k: v for k, v in row.items() if k not in _CORE_FIELDS}
    return Problem(
        id=f"{name}/{row_id}",
        question=_question(row),
        answer=answer,
        solution=_solution(name, row, answer),
        source=name,
        tier=None,
        meta=meta,
    )


# ---------------------------------------------------------------------------------------------
# loading


def benchmarks_dir(path: str | os.PathLike | None = None) -> Path | None:
    """The local benchmark folder: `path`, else env SCOPE_BENCHMARKS_DIR, else None."""
    if path is not None:
        return Path(path)
    env = os.environ.get("SCOPE_BENCHMARKS_DIR")
    return Path(env) if env else None


def jsonl_rows(file: Path):
    """Yield (line number, parsed row) of a JSONL file, skipping blank lines.

    Lines are decoded one at a time, so a file that is not UTF-8 fails naming its file and
    line (a text-mode iterator raises a UnicodeDecodeError that names neither). Raises
    ValueError "FILE:LINE: ..." for undecodable text or bad JSON.
    """
    with open(file, "rb") as handle:
        for line_number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{file}:{line_number}: not UTF-8 text (byte {raw[error.start]:#04x} at column "
                                 f"{error.start + 1}); save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                yield line_number, json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{file}:{line_number}: bad JSON ({error.msg} at column {error.colno})") from None


def _load_jsonl(name: str, file: Path, limit: int | None) -> list[Problem]:
    problems: list[Problem] = []
    if limit == 0:
        return problems
    for line_number, row in jsonl_rows(file):
        try:
            problems.append(problem_from_row(name, row, line_number - 1))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{file}:{line_number}: {name} row has missing or malformed field {e}") from e
        if limit is not None and len(problems) >= limit:
            break
    if not problems:
        raise ValueError(f"{file}: no rows (an empty {name} file; expected one JSON object per line)")
    return problems


def _load_hub(name: str, limit: int | None) -> list[Problem]:
    hub_id, config, split = REGISTRY[name].hub
    offline_help = (
        f"Benchmark {name!r}: no local folder was given and the hub copy ({hub_id}) could not be "
        f"loaded. Offline, pass path=DIR or set SCOPE_BENCHMARKS_DIR=DIR, where DIR/{name}/test.jsonl "
        "is the math-evaluation JSONL (e.g. QwenLM/Qwen2.5-Math evaluation/data)."
    )
    try:
        import datasets  # optional, not a project dependency
    except ImportError as e:
        raise FileNotFoundError(offline_help + " (`datasets` is not installed.)") from e
    try:
        rows = datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # offline, gated or renamed: say how to load locally
        raise FileNotFoundError(f"{offline_help} ({type(e).__name__}: {e})") from e
    problems = []
    for index, row in enumerate(rows):
        if limit is not None and len(problems) >= limit:
            break
        try:
            problems.append(problem_from_row(name, dict(row), index))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{hub_id} row {index}: {name} row has missing or malformed field {e}") from e
    return problems


def load_benchmark(name: str, path: str | os.PathLike | None = None, *, limit: int | None = None) -> list[Problem]:
    """Load benchmark `name` (one of BENCHMARKS) as a list of Problems, in file order.

    `path`: folder containing `<name>/test.jsonl` (default: env SCOPE_BENCHMARKS_DIR; when neither
    is set, the public hub copy through `datasets`). `limit`: keep the first `limit` rows.
    A malformed row raises ValueError naming the file and line number.
    """
    if name not in REGISTRY:
        raise ValueError(f"name: expected one of {BENCHMARKS}, got {name!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit: expected a non-negative int or None, got {limit!r}")
    folder = benchmarks_dir(path)
    if folder is not None:
        file = folder / name / "test.jsonl"
        if file.is_file():
            return _load_jsonl(name, file, limit)
        if path is not None:  # an explicit folder must exist; a stale env var falls through
            raise FileNotFoundError(f"path: expected {file} (a folder with {name}/test.jsonl), not found")
    return _load_hub(name, limit)
