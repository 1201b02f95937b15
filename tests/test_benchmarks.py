"""Benchmark loaders: on small files these tests write, and on the real benchmark files.

The real files are read from the folder SCOPE_BENCHMARKS_DIR names (`<dir>/<name>/test.jsonl`
for the seven benchmarks below); they are never copied into the repository, and the tests
that need them are skipped, saying what to set, when the variable is unset. Everything else
runs on fixtures written to tmp_path.
"""

from __future__ import annotations

import json
import os
import random
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

from scope_lib.worlds.benchmarks import BENCHMARKS, REGISTRY, _json_dataset, _same_json, load_benchmark, read_json_lines
from scope_lib.verify import grade_batch

# Row counts of the benchmarks README table, written out independently of the registry.
README_ROWS = {
    "aime24": 30, "aime25": 30, "amc23": 40, "math500": 500,
    "minerva_math": 272, "olympiadbench": 675, "gsm8k": 1319,
}


# Set but incomplete, the tests run and fail naming the missing file: the variable asked for them.
FOLDER = Path(os.environ["SCOPE_BENCHMARKS_DIR"]) if os.environ.get("SCOPE_BENCHMARKS_DIR") else None
needs_folder = pytest.mark.skipif(
    FOLDER is None, reason="real benchmark files: set SCOPE_BENCHMARKS_DIR to a folder holding <name>/test.jsonl "
                           f"for {', '.join(sorted(README_ROWS))}"
)


def _perturb(answer: str) -> str:
    """A different answer: a plain number moved by one (doubled when huge, where +1 is below
    float precision), else the first digit bumped, else the expression plus one.

    Not "+1" on a tuple (math-verify reads `(a, b)+1` as the tuple itself), nor the last digit
    (in `15\\mbox{ cm}^2` it is a unit's exponent, and units are ignored).
    """
    try:
        value = Decimal(answer.replace(",", ""))
        return str(value + 1 if abs(value) < 10**6 else value * 2)
    except InvalidOperation:
        pass
    digits = [i for i, c in enumerate(answer) if c.isdigit()]
    if digits:
        i = digits[0]
        return answer[:i] + str((int(answer[i]) + 1) % 10) + answer[i + 1 :]
    return answer + "+1"


def test_registry_names():
    assert set(BENCHMARKS) == set(README_ROWS) == set(REGISTRY)
    with pytest.raises(ValueError, match="name"):
        load_benchmark("mmlu", "/nonexistent")


@needs_folder
@pytest.mark.parametrize("name", sorted(README_ROWS))
def test_row_counts_and_fields(name):
    problems = load_benchmark(name, FOLDER)
    assert len(problems) == README_ROWS[name]
    assert len({p.id for p in problems}) == len(problems)  # ids unique
    for p in problems:
        assert p.source == name and p.tier is None
        assert p.question.strip() and p.answer.strip()
        assert not p.answer.startswith("$") and not p.answer.endswith("$")
    assert [p.id for p in load_benchmark(name, FOLDER, limit=5)] == [p.id for p in problems[:5]]


@needs_folder
def test_answer_adapters_on_known_rows():
    amc = load_benchmark("amc23", FOLDER, limit=1)[0]
    assert amc.answer == "27"  # stored as 27.0
    gsm = load_benchmark("gsm8k", FOLDER, limit=1)[0]
    assert gsm.answer == "18" and gsm.solution.endswith("\\boxed{18}$.") and "<<" not in gsm.solution
    minerva = load_benchmark("minerva_math", FOLDER, limit=1)[0]
    assert minerva.answer == "1.6"  # last \boxed{} of its solution
    olympiad = load_benchmark("olympiadbench", FOLDER)
    tuples = [p.answer for p in olympiad if p.meta["answer_type"] == "Tuple"]
    assert tuples and all("$" not in a for a in tuples)  # "$(3,2)$,$(-3,2)$" -> "(3,2), (-3,2)"
    # commas in GSM8K answers are thousands separators
    raw = [json.loads(line) for line in open(FOLDER / "gsm8k" / "test.jsonl", encoding="utf-8")]
    with_comma = [i for i, r in enumerate(raw) if "," in r["answer"].rsplit("####", 1)[1]]
    problems = load_benchmark("gsm8k", FOLDER)
    for i in with_comma:
        assert "," not in problems[i].answer and problems[i].answer.isdigit()


@needs_folder
@pytest.mark.parametrize("name", sorted(README_ROWS))
def test_gold_in_a_box_grades_correct(name):
    """Every gold answer, boxed, equals itself for >= 99% of rows (full set, ~15 s in all)."""
    problems = load_benchmark(name, FOLDER)
    verdicts = grade_batch(["\\boxed{" + p.answer + "}" for p in problems], [p.answer for p in problems])
    wrong = [p.answer for p, ok in zip(problems, verdicts) if not ok]
    assert len(wrong) <= 0.01 * len(problems), wrong[:10]


def _perturbed_check(name: str, sample: int | None) -> None:
    problems = load_benchmark(name, FOLDER)
    if sample is not None and len(problems) > sample:
        problems = random.Random(0).sample(problems, sample)
    verdicts = grade_batch(["\\boxed{" + _perturb(p.answer) + "}" for p in problems], [p.answer for p in problems])
    accepted = [p.answer for p, ok in zip(problems, verdicts) if ok]
    assert len(accepted) <= 0.01 * len(problems), accepted[:10]


@needs_folder
@pytest.mark.parametrize("name", sorted(README_ROWS))
def test_perturbed_answer_grades_wrong_sample(name):
    _perturbed_check(name, sample=60)


@pytest.mark.slow
@needs_folder
@pytest.mark.parametrize("name", sorted(README_ROWS))
def test_perturbed_answer_grades_wrong_full(name):
    _perturbed_check(name, sample=None)


# ---------------------------------------------------------------------------------------------
# malformed rows


def _write(tmp_path: Path, name: str, lines: list[str]) -> Path:
    (tmp_path / name).mkdir()
    file = tmp_path / name / "test.jsonl"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return file


@pytest.mark.parametrize(
    "name, bad_line, what",
    [
        ("aime24", '{"problem": "p", "answer": "1"', "bad JSON"),
        ("aime24", '{"problem": "p"}', "answer"),
        ("amc23", '{"question": "q"}', "answer"),
        ("minerva_math", '{"problem": "p", "solution": "no box"}', "boxed"),
        ("olympiadbench", '{"question": "q", "final_answer": []}', "final_answer"),
        ("gsm8k", '{"question": "q", "answer": "no marker"}', "####"),
        ("math500", '{"answer": "1"}', "problem"),
    ],
)
def test_malformed_row_names_file_and_line(tmp_path, name, bad_line, what):
    good = {
        "aime24": '{"problem": "p", "answer": "1"}',
        "amc23": '{"question": "q", "answer": 3.0}',
        "minerva_math": '{"problem": "p", "solution": "so \\\\boxed{2}"}',
        "olympiadbench": '{"question": "q", "final_answer": ["$x$"]}',
        "gsm8k": '{"question": "q", "answer": "a\\n#### 1,000"}',
        "math500": '{"problem": "p", "answer": "\\\\frac{1}{2}"}',
    }[name]
    file = _write(tmp_path, name, [good, good, bad_line, good])
    with pytest.raises(ValueError, match=rf"test\.jsonl:3: .*{what}") as info:
        load_benchmark(name, tmp_path)
    assert str(file) in str(info.value)
    # the whole file is read and checked, even when fewer rows are asked for
    with pytest.raises(ValueError, match=rf"test\.jsonl:3: .*{what}"):
        load_benchmark(name, tmp_path, limit=2)


def test_local_formats_from_a_temp_folder(tmp_path):
    _write(tmp_path, "amc23", ['{"id": 7, "question": "q", "answer": 27.0}'])
    _write(tmp_path, "olympiadbench", ['{"id": 3, "question": "q", "final_answer": ["$(3,2)$,$(-3,2)$"]}'])
    _write(tmp_path, "gsm8k", ['{"question": "q", "answer": "x <<2*3=6>>6\\n#### 1,250"}'])
    assert load_benchmark("amc23", tmp_path)[0].answer == "27"
    assert load_benchmark("amc23", tmp_path)[0].id == "amc23/7"
    assert load_benchmark("olympiadbench", tmp_path)[0].answer == "(3,2), (-3,2)"
    gsm = load_benchmark("gsm8k", tmp_path)[0]
    assert gsm.answer == "1250" and gsm.id == "gsm8k/0"
    with pytest.raises(FileNotFoundError, match="aime24"):
        load_benchmark("aime24", tmp_path)


def _offline_datasets(monkeypatch) -> list:
    """A stand-in `datasets` whose hub is unreachable; returns the list of calls it received."""
    import sys
    import types

    calls = []

    def load_dataset(hub_id, config=None, split=None):
        calls.append(hub_id)
        raise ConnectionError(f"Couldn't reach {hub_id!r} on the Hub")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_offline_without_folder_says_what_to_set(monkeypatch):
    calls = _offline_datasets(monkeypatch)
    monkeypatch.delenv("SCOPE_BENCHMARKS_DIR", raising=False)
    with pytest.raises(FileNotFoundError) as info:
        load_benchmark("math500")
    message = str(info.value)
    assert calls == ["HuggingFaceH4/MATH-500"]
    for part in ("SCOPE_BENCHMARKS_DIR=DIR", "DIR/math500/test.jsonl", "data.benchmarks_dir", "HuggingFaceH4/MATH-500",
                 "ConnectionError"):
        assert part in message, (part, message)


def test_a_stale_folder_variable_is_named(monkeypatch, tmp_path):
    _offline_datasets(monkeypatch)
    monkeypatch.setenv("SCOPE_BENCHMARKS_DIR", str(tmp_path))  # holds no gsm8k/test.jsonl
    with pytest.raises(FileNotFoundError) as info:
        load_benchmark("gsm8k")
    assert f"SCOPE_BENCHMARKS_DIR is {str(tmp_path)!r}, which holds no gsm8k/test.jsonl" in str(info.value)


def test_hub_rows_use_the_same_adapters(monkeypatch):
    """Online loading, with a stand-in `datasets` module: hub column names map like JSONL ones."""
    import sys
    import types

    hub_rows = {
        "math-ai/minervamath": [{"question": "q", "answer": "4.5e33"}],  # answer column, no solution
        "math-ai/amc23": [{"id": 3, "question": "q", "answer": 27.0}],
        "HuggingFaceH4/aime_2024": [{"id": 60, "problem": "p", "answer": 204, "solution": "s"}],
        "openai/gsm8k": [{"question": "q", "answer": "2 + 2 = <<2+2=4>>4\n#### 4"}],
    }
    calls = []

    def load_dataset(hub_id, config=None, split=None):
        calls.append((hub_id, config, split))
        return hub_rows[hub_id]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    monkeypatch.delenv("SCOPE_BENCHMARKS_DIR", raising=False)
    assert load_benchmark("minerva_math")[0].answer == "4.5e33"
    assert load_benchmark("amc23")[0].answer == "27" and load_benchmark("amc23")[0].id == "amc23/3"
    assert load_benchmark("aime24")[0].answer == "204"
    assert load_benchmark("gsm8k")[0].answer == "4"
    assert ("openai/gsm8k", "main", "test") in calls


# ---------------------------------------------------------------------------------------------
# local files go through `datasets`, and keep the values their lines wrote


def test_local_files_are_read_through_datasets(tmp_path, monkeypatch):
    """load_dataset("json") reads the file, in memory, its cache in a temporary folder that is
    gone afterwards (not the repository, not ~/.cache)."""
    import datasets

    real, calls = datasets.load_dataset, []

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        assert Path(kwargs["cache_dir"]).is_dir()
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", recording)
    file = _write(tmp_path, "aime24", ['{"id": 5, "problem": "p", "answer": "12"}', '{"id": 6, "problem": "q", "answer": "3"}'])
    problems = load_benchmark("aime24", tmp_path)
    assert [(p.id, p.question, p.answer) for p in problems] == [("aime24/5", "p", "12"), ("aime24/6", "q", "3")]
    assert len(calls) == 1
    args, kwargs = calls[0]
    assert args == ("json",) and kwargs["data_files"] == str(file.resolve()) and kwargs["split"] == "train"
    assert kwargs["keep_in_memory"] is True
    cache = Path(kwargs["cache_dir"])
    assert not cache.exists()
    repository = Path(__file__).resolve().parents[1]
    assert not cache.is_relative_to(repository) and not cache.is_relative_to(Path.home())

    # datasets' rows are the rows: one row fewer than the file's lines is an error, not a shorter list
    def one_row_short(*args, **kwargs):
        return real(*args, **kwargs).select(range(1))

    monkeypatch.setattr(datasets, "load_dataset", one_row_short)
    with pytest.raises(ValueError, match=rf"{re.escape(str(file))}: `datasets` read 1 rows, but the file has 2"):
        load_benchmark("aime24", tmp_path)


# Answers as their lines write them, and the text the loader must give each. Strings that look
# like numbers beside real numbers are where datasets' one-type-per-column reading changes values.
EXACT = [
    ('"007"', "007"), ('"1"', "1"), ("1", "1"), ('"1.0"', "1.0"), ("2.5", "2.5"), ("27.0", "27"),
    ('"4"', "4"), ('"true"', "true"), ("12345678901234567891", "12345678901234567891"), ('"0.10"', "0.10"),
]


@pytest.mark.parametrize("blank", [False, True], ids=["no-blank-lines", "blank-lines"])
def test_answers_keep_their_exact_text(tmp_path, blank):
    lines = []
    for written, _ in EXACT:
        lines += [f'{{"problem": "p", "answer": {written}}}'] + (["", "  "] if blank else [])
    file = _write(tmp_path, "aime24", lines)
    assert [p.answer for p in load_benchmark("aime24", tmp_path)] == [text for _, text in EXACT]
    if not blank:  # read by datasets (which fails on a blank line in a mixed-type column: then by the scan)
        assert _json_dataset(file) is not None


def test_datasets_alone_would_change_these_answers(tmp_path):
    """Why each row is compared with its line: pyarrow keeps one type per column, so an int
    beside floats comes back a float, rounded beyond 2**53."""
    import tempfile

    import datasets

    file = _write(tmp_path, "aime24", ['{"answer": 12345678901234567891}', '{"answer": 2.5}', '{"answer": 3}'])
    with tempfile.TemporaryDirectory() as cache:
        rows = datasets.load_dataset("json", data_files=str(file), split="train", keep_in_memory=True, cache_dir=cache)
        values = rows["answer"]
    assert values[2] == 3 and isinstance(values[2], float)
    assert int(values[0]) != 12345678901234567891
    assert [value for _, value in read_json_lines(file)] == [{"answer": 12345678901234567891}, {"answer": 2.5},
                                                             {"answer": 3}]
    assert isinstance(list(read_json_lines(file))[2][1]["answer"], int)


def test_line_numbers_count_blank_lines(tmp_path):
    file = _write(tmp_path, "math500", ["", '{"problem": "a", "answer": "1"}', "   ", "\t",
                                        '{"problem": "b", "answer": "2"}', '{"problem": "c"}'])
    assert [line for line, _ in read_json_lines(file)] == [2, 5, 6]
    with pytest.raises(ValueError, match=rf"{re.escape(str(file))}:6: math500 row .*answer"):
        load_benchmark("math500", tmp_path)
    file.write_text('\n{"problem": "a", "answer": "1"}\n\n{"problem": "b", "answer": "2"}\n')
    assert [p.id for p in load_benchmark("math500", tmp_path)] == ["math500/1", "math500/3"]  # the line index


def test_rows_keep_only_the_keys_their_line_wrote(tmp_path):
    # datasets gives every row every column (None where a line had none); meta must not grow.
    _write(tmp_path, "aime24", ['{"problem": "p", "answer": "1", "level": 3, "tags": {"a": 1}}',
                                '{"problem": "q", "answer": "2", "tags": {"b": 2}}'])
    first, second = load_benchmark("aime24", tmp_path)
    assert first.meta == {"level": 3, "tags": {"a": 1}}
    assert second.meta == {"tags": {"b": 2}}


def test_not_json_constants_and_byte_order_mark(tmp_path):
    file = _write(tmp_path, "aime24", ['{"problem": "p", "answer": "1"}', '{"problem": "p", "answer": "2", "score": NaN}'])
    with pytest.raises(ValueError, match=rf"{re.escape(str(file))}:2: NaN is not JSON"):
        load_benchmark("aime24", tmp_path)
    file.write_bytes(b"\xef\xbb\xbf" + b'{"problem": "p", "answer": "9"}\n')
    assert load_benchmark("aime24", tmp_path)[0].answer == "9"


def test_gzip_json_lines(tmp_path):
    import gzip

    file = tmp_path / "rows.jsonl.gz"
    rows = [{"question": f"q{i}", "answer": str(i).zfill(3)} for i in range(50)]
    with gzip.open(file, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(json.dumps(row) for row in rows) + "\n")
    assert list(read_json_lines(file)) == list(enumerate(rows, start=1))


def test_same_json_tells_types_apart():
    assert _same_json({"a": [1, "x"]}, {"a": [1, "x"]})
    assert not _same_json(1, 1.0) and not _same_json("1", 1) and not _same_json(None, 0)
    assert not _same_json({"a": 1}, {"a": 1, "b": None}) and not _same_json([1], [1, 2])
    assert not _same_json(True, 1)
