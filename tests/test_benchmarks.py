"""Benchmark loaders on the real JSONL files (skipped cleanly when the folder is absent).

The folder lives beside the project (`../shared/benchmarks` from the repository root) or where
SCOPE_BENCHMARKS_DIR points; it is never copied into the repository.
"""

from __future__ import annotations

import json
import os
import random
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pytest

from scope_lib.benchmarks import BENCHMARKS, REGISTRY, load_benchmark
from scope_lib.verify import grade_batch

# Row counts of the benchmarks README table, written out independently of the registry.
README_ROWS = {
    "aime24": 30, "aime25": 30, "amc23": 40, "math500": 500,
    "minerva_math": 272, "olympiadbench": 675, "gsm8k": 1319,
}


def _benchmarks_folder() -> Path | None:
    env = os.environ.get("SCOPE_BENCHMARKS_DIR")
    folder = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
    return folder if all((folder / n / "test.jsonl").is_file() for n in README_ROWS) else None


FOLDER = _benchmarks_folder()
needs_folder = pytest.mark.skipif(
    FOLDER is None, reason="benchmark JSONL folder not found (../shared/benchmarks or SCOPE_BENCHMARKS_DIR)"
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
    # rows before the bad one load under a limit
    assert len(load_benchmark(name, tmp_path, limit=2)) == 2


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


def test_offline_without_folder_says_how(monkeypatch):
    monkeypatch.delenv("SCOPE_BENCHMARKS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="SCOPE_BENCHMARKS_DIR"):
        load_benchmark("math500")


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
