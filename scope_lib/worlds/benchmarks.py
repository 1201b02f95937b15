"""Real evaluation benchmarks (Table 1's eval sets, plus GSM8K for the `smol` scale).

Each benchmark is a registry entry: where its rows come from and one answer adapter that turns
a raw row into a `Problem` whose `answer` string `scope_lib.verify.is_correct` can grade.

Sources, in order, both read through `datasets`:
1. a local folder holding `<name>/test.jsonl` (`path=`, the config key `data.benchmarks_dir`,
   else env `SCOPE_BENCHMARKS_DIR`), in the formats of the math-evaluation repositories' JSONL
   files (Qwen2.5-Math `evaluation/data`), read by `read_json_lines`:
   `datasets.load_dataset("json", ...)` after a line-by-line scan, so that every bad byte, line
   or row fails naming FILE:LINE and every answer keeps the exact text its line wrote;
2. otherwise the public hub dataset, `datasets.load_dataset(<hub id>)` (the `paper` scale; needs
   the hub). When that fails, the error names SCOPE_BENCHMARKS_DIR and the layout it expects.

The files are never copied into this repository. Adapters accept both the JSONL and the hub
field names (`problem`/`question`, minerva's hub `answer` column), since the hub copies use
different columns for the same problems.

Usage:
    problems = load_benchmark("math500", "/data/benchmarks", limit=50)  # /data/benchmarks/math500/test.jsonl
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from scope_lib.problem import Problem
from scope_lib.verify import extract_boxed, is_null_answer

__all__ = ["BENCHMARKS", "BENCHMARKS_ENV", "REGISTRY", "Benchmark", "answer_text", "benchmarks_dir", "load_benchmark",
           "load_hub_dataset", "problem_from_row", "read_json_lines", "scan_json_lines"]


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
    if is_null_answer(text):
        raise TypeError(f"{field}: {value!r} is the text of a missing value (None, nan, null), not an answer")
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
    return answer_text(text.rsplit("####", 1)[1].strip().replace(",", ""))


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


BENCHMARKS_ENV = "SCOPE_BENCHMARKS_DIR"  # the user's benchmark folder: <dir>/<name>/test.jsonl


def benchmarks_dir(path: str | os.PathLike | None = None) -> Path | None:
    """The local benchmark folder: `path`, else env SCOPE_BENCHMARKS_DIR, else None."""
    if path is not None:
        return Path(path)
    env = os.environ.get(BENCHMARKS_ENV)
    return Path(env) if env else None


def _open_bytes(file: Path):
    return gzip.open(file, "rb") if file.suffix == ".gz" else open(file, "rb")


def _not_json_constant(token: str):
    # json.loads accepts NaN and Infinity, which are not JSON (RFC 8259) and which `datasets`
    # (pyarrow) refuses with an error that names neither the file nor the line.
    raise ValueError(f"{token} is not JSON (expected a string or a finite number)")


def _pairs_without_duplicates(pairs: list) -> dict:
    # json.loads keeps the last of two equal keys; which one the writer meant is unknowable.
    row: dict = {}
    for key, value in pairs:
        if key in row:
            raise ValueError(f"key {key!r} appears twice in one object")
        row[key] = value
    return row


def _lone_surrogate(value, depth: int = 0) -> str | None:
    """The first string (or key) of `value` holding a lone surrogate (JSON's "\\ud800" escapes
    decode to one; it is not Unicode text, and a tokenizer fails on it later), else None."""
    if isinstance(value, str):
        return value if any("\ud800" <= c <= "\udfff" for c in value) else None
    if depth > 64:
        return None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _lone_surrogate(key, depth + 1) if isinstance(key, str) else None
        found = found or _lone_surrogate(item, depth + 1)
        if found is not None:
            return found
    return None


def scan_json_lines(file: Path) -> Iterator[tuple[int, dict]]:
    """Yield (line number, row) of a JSON Lines file (gzip when it ends in .gz), blank lines skipped.

    Each line is decoded and parsed on its own, with Python's `json`, so every problem names its
    file and line: text that is not UTF-8, bad JSON, NaN or Infinity, a line that is not a JSON
    object. Raises ValueError "FILE:LINE: ...". A line is blank when it holds only JSON whitespace
    (space, tab, CR, LF), the lines `datasets` skips too. A UTF-8 byte-order mark on the first
    line is dropped, as `datasets` drops it.
    """
    with _open_bytes(file) as handle:
        for line_number, raw in enumerate(handle, start=1):
            where = f"{file}:{line_number}"
            try:
                line = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{where}: not UTF-8 text (byte {raw[error.start]:#04x} at column "
                                 f"{error.start + 1}); save the file as UTF-8") from None
            line = line.rstrip(" \t\r\n")
            if not line:
                continue
            try:
                row = json.loads(line, parse_constant=_not_json_constant, object_pairs_hook=_pairs_without_duplicates)
            except json.JSONDecodeError as error:
                raise ValueError(f"{where}: bad JSON ({error.msg} at column {error.colno})") from None
            except ValueError as error:
                raise ValueError(f"{where}: {error}") from None
            if not isinstance(row, dict):
                raise ValueError(f"{where}: expected a JSON object per line, got a JSON {type(row).__name__}")
            bad = _lone_surrogate(row)
            if bad is not None:
                raise ValueError(f"{where}: a string holds a lone surrogate (an escape such as \\ud800 that is not "
                                 f"Unicode text): {ascii(bad)[:80]}")
            yield line_number, row


@contextlib.contextmanager
def _quiet_datasets():
    """`datasets` without its progress bars (a bar per small file clutters every log)."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield datasets
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()


def read_json_lines(file: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line number, row) of a local JSON Lines file, read through `datasets`.

    The file is first scanned line by line (`scan_json_lines`: every byte, JSON or row-shape
    problem raises ValueError naming FILE:LINE), then read by
    `datasets.load_dataset("json", data_files=FILE, split="train")`, held in memory
    (`keep_in_memory=True`) with its `cache_dir` a temporary folder removed on return, so nothing
    is written to the repository or to ~/.cache. datasets must find the same rows as the scan,
    one per non-blank line, in order; where datasets cannot read a file the scan read (see
    `_json_dataset`), the scan's rows are the file's rows.

    Each row yielded holds the values its line wrote, and only the keys it wrote: datasets keeps
    one Arrow type per column, so it changes values where lines disagree (ints beside floats come
    back as floats, an int beyond 2**53 rounded; a column mixing strings and numbers comes back
    as JSON and its string "007" as the number 7), and it gives every row every column, None
    where the line had none. Where datasets' value differs from the line's, the line's is kept,
    so answers keep their exact text.
    """
    file = Path(file)
    count = sum(1 for _ in scan_json_lines(file))  # raises FILE:LINE before datasets sees the file
    if count == 0:
        return
    dataset = _json_dataset(file)
    if dataset is None:
        yield from scan_json_lines(file)
        return
    if len(dataset) != count:
        raise ValueError(f"{file}: `datasets` read {len(dataset)} rows, but the file has {count} non-blank lines")
    rows_read = (dict(zip(batch, values)) for batch in dataset.iter(batch_size=1024) for values in zip(*batch.values()))
    for (line_number, written), row in zip(scan_json_lines(file), rows_read):
        yield line_number, {key: row[key] if _same_json(row.get(key), value) else value for key, value in written.items()}


def _json_dataset(file: Path):
    """`datasets.load_dataset("json", ...)` of a file `scan_json_lines` read without error, in
    memory, its cache in a temporary folder; None where datasets cannot read such a file (it
    fails, for one, on a blank line in a file whose column mixes strings and numbers)."""
    with _quiet_datasets() as datasets, tempfile.TemporaryDirectory(prefix="scope-datasets-") as cache:
        try:
            return datasets.load_dataset("json", data_files=str(file.resolve()), split="train",
                                         keep_in_memory=True, cache_dir=cache)
        except Exception:  # noqa: BLE001 - the scan already vouched for every line
            return None


def _same_json(a, b) -> bool:
    """Whether two parsed JSON values are the same value of the same JSON type (1 is not 1.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b))
    return a == b


def load_hub_dataset(hub_id: str, config: str | None = None, split: str = "train", *,
                     data_files: list[str] | None = None, help_text: str = ""):
    """`datasets.load_dataset(hub_id, config, split=split)` (or the hub repository's JSON
    `data_files`), in the Hugging Face cache as usual. Raises FileNotFoundError with `help_text`
    (how to load the data locally instead) when the hub cannot be reached, the dataset is gated
    or renamed."""
    import datasets

    try:
        if data_files:
            return datasets.load_dataset("json", data_files=[f"hf://datasets/{hub_id}/{f}" for f in data_files], split=split)
        return datasets.load_dataset(hub_id, config, split=split)
    except Exception as error:  # offline, gated or renamed: say how to load locally
        raise FileNotFoundError(f"{help_text} ({type(error).__name__}: {error})".strip()) from error


def _problems(name: str, rows: Iterable[tuple[str, int, dict]], limit: int | None) -> list[Problem]:
    """Problems of benchmark `name` from (where, index, row) triples; every row is checked, then
    the first `limit` kept. A bad row raises ValueError naming `where` (FILE:LINE or hub row)."""
    problems = []
    for where, index, row in rows:
        try:
            problems.append(problem_from_row(name, row, index))
        except (KeyError, TypeError, AttributeError) as e:
            raise ValueError(f"{where}: {name} row has missing or malformed field {e}") from e
    return problems if limit is None else problems[:limit]


def _load_local(name: str, file: Path, limit: int | None) -> list[Problem]:
    problems = _problems(name, ((f"{file}:{line}", line - 1, row) for line, row in read_json_lines(file)), limit)
    if not problems:
        raise ValueError(f"{file}: no rows (an empty {name} file; expected one JSON object per line)")
    return problems


def _missing_folder_help(name: str) -> str:
    """What to set to read benchmark `name` from a local folder instead of the hub."""
    env = os.environ.get(BENCHMARKS_ENV)
    stale = (f" ({BENCHMARKS_ENV} is {env!r}, which holds no {name}/test.jsonl.)" if env else "")
    return (f"Benchmark {name!r}: no local file, and the hub copy ({REGISTRY[name].hub[0]}) could not be loaded.{stale} "
            f"To read it from a folder, set the environment variable {BENCHMARKS_ENV}=DIR (or the config key "
            f"data.benchmarks_dir, or path=DIR), where DIR/{name}/test.jsonl is the benchmark's JSON Lines file as the "
            "math-evaluation repositories keep it (e.g. QwenLM/Qwen2.5-Math evaluation/data/<name>/test.jsonl).")


def _load_hub(name: str, limit: int | None) -> list[Problem]:
    hub_id, config, split = REGISTRY[name].hub
    rows = load_hub_dataset(hub_id, config, split, help_text=_missing_folder_help(name))
    return _problems(name, ((f"{hub_id} row {index}", index, dict(row)) for index, row in enumerate(rows)), limit)


def load_benchmark(name: str, path: str | os.PathLike | None = None, *, limit: int | None = None) -> list[Problem]:
    """Load benchmark `name` (one of BENCHMARKS) as a list of Problems, in file order.

    `path`: a folder holding `<name>/test.jsonl` (default: env SCOPE_BENCHMARKS_DIR), read through
    `datasets` (`read_json_lines`); when neither is set, or the env folder lacks the file, the
    public hub copy through `datasets.load_dataset` (the `paper` scale). `limit`: keep the first
    `limit` rows (every row is still checked). A malformed row raises ValueError naming the file
    and line number (or the hub row).
    """
    if name not in REGISTRY:
        raise ValueError(f"name: expected one of {BENCHMARKS}, got {name!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit: expected a non-negative int or None, got {limit!r}")
    if limit == 0:
        return []
    folder = benchmarks_dir(path)
    if folder is not None:
        file = folder / name / "test.jsonl"
        if file.is_file():
            return _load_local(name, file, limit)
        if path is not None:  # an explicit folder must hold the file; a stale env var falls through
            raise FileNotFoundError(f"path: expected {file} (a folder with {name}/test.jsonl), not found")
    return _load_hub(name, limit)
