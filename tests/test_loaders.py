"""Bad data: the benchmark and training-prompt loaders name the file and line of
every bad row, refuse null, NaN and non-scalar answers, and name a file that is not UTF-8.

Small fixtures in tmp_path only: these tests never need the real benchmark folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scope_lib.worlds.benchmarks import load_benchmark
from scope_lib.verify import is_correct
from scope_lib.world import _load_jsonl_problems


def _benchmark(tmp_path: Path, name: str, lines: list[str | bytes]) -> Path:
    (tmp_path / name).mkdir(exist_ok=True)
    file = tmp_path / name / "test.jsonl"
    file.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    return file


GOOD = {
    "aime24": '{"problem": "p", "answer": "1"}',
    "amc23": '{"question": "q", "answer": 3.0}',
    "math500": '{"problem": "p", "answer": "\\\\frac{1}{2}"}',
    "minerva_math": '{"problem": "p", "solution": "so \\\\boxed{2}"}',
    "olympiadbench": '{"question": "q", "final_answer": ["$x$"]}',
    "gsm8k": '{"question": "q", "answer": "a\\n#### 1,000"}',
}

# Rows that became the gold strings "None", "nan", "{'a': 1}" ... and were then graded.
BAD_ROWS = [
    ("aime24", '{"problem": "p", "answer": null}', "null"),
    ("aime24", '{"problem": "p", "answer": NaN}', "finite"),
    ("aime24", '{"problem": "p", "answer": Infinity}', "finite"),
    ("aime24", '{"problem": "p", "answer": {"a": 1}}', "dict"),
    ("aime24", '{"problem": "p", "answer": [1, 2]}', "list"),
    ("aime24", '{"problem": "p", "answer": true}', "bool"),
    ("aime24", '{"problem": "p", "answer": "  "}', "empty"),
    ("math500", '{"problem": "p", "answer": null}', "null"),
    ("amc23", '{"question": "q", "answer": NaN}', "finite"),
    ("amc23", '{"question": "q", "answer": null}', "null"),
    ("olympiadbench", '{"question": "q", "final_answer": [null]}', "null"),
    ("olympiadbench", '{"question": "q", "final_answer": [{"a": 1}]}', "dict"),
    ("olympiadbench", '{"question": "q", "final_answer": NaN}', "finite"),
    ("gsm8k", '{"question": "q", "answer": null}', "null"),
    ("gsm8k", '{"question": "q", "answer": 12}', "string"),
    ("minerva_math", '{"problem": "p", "solution": null}', "solution"),
    ("minerva_math", '{"problem": "p", "solution": ["\\\\boxed{1}"]}', "solution"),
    ("aime24", '{"problem": null, "answer": "1"}', "problem"),
    ("aime24", '["p", "1"]', "JSON object"),
]


@pytest.mark.parametrize("name,bad_line,what", BAD_ROWS, ids=[f"{n}:{b}" for n, b, _ in BAD_ROWS])
def test_bad_benchmark_row_names_file_line_and_reason(tmp_path, name, bad_line, what):
    file = _benchmark(tmp_path, name, [GOOD[name], bad_line, GOOD[name]])
    with pytest.raises(ValueError) as info:
        load_benchmark(name, tmp_path)
    message = str(info.value)
    assert f"{file}:2:" in message, message
    assert what in message, message


def test_a_null_answer_is_not_graded_correct_any_more(tmp_path):
    # The harm itself: gold "None" made \\boxed{None} a correct answer; now such a gold is refused.
    with pytest.raises(ValueError, match="missing value"):
        is_correct("\\boxed{None}", "None")
    _benchmark(tmp_path, "aime24", ['{"problem": "p", "answer": null}'])
    with pytest.raises(ValueError, match="null"):
        load_benchmark("aime24", tmp_path)


def test_non_utf8_benchmark_names_file_and_line(tmp_path):
    file = _benchmark(tmp_path, "aime24", [GOOD["aime24"], '{"problem": "caf\xe9", "answer": "1"}'.encode("latin-1")])
    with pytest.raises(ValueError, match="UTF-8") as info:
        load_benchmark("aime24", tmp_path)
    assert f"{file}:2:" in str(info.value)


def test_empty_benchmark_file_is_an_error(tmp_path):
    file = tmp_path / "aime24" / "test.jsonl"
    file.parent.mkdir()
    file.write_text("\n\n")
    with pytest.raises(ValueError, match="no rows") as info:
        load_benchmark("aime24", tmp_path)
    assert str(file) in str(info.value)
    assert load_benchmark("aime24", tmp_path, limit=0) == []  # nothing asked, nothing wrong


def test_numbers_keep_their_text(tmp_path):
    _benchmark(tmp_path, "aime24", ['{"problem": "p", "answer": 204}', '{"problem": "p", "answer": 0.5}',
                                    '{"problem": "p", "answer": 27.0}', '{"problem": "p", "answer": " 7 "}'])
    assert [p.answer for p in load_benchmark("aime24", tmp_path)] == ["204", "0.5", "27", "7"]


# --- training prompts (data.train: a JSONL file) ---------------------------------------------


def _train(tmp_path: Path, lines: list[str | bytes]) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    return path


TRAIN_BAD = [
    ('["1+1?", 2]', "JSON object"),  # was a TypeError traceback
    ('"just text"', "JSON object"),
    ('{"question": "1+1?", "answer": null}', "null"),
    ('{"question": "1+1?", "answer": NaN}', "finite"),
    ('{"question": "1+1?", "answer": {"a": 1}}', "dict"),
    ('{"question": "1+1?", "answer": ""}', "empty"),
    ('{"question": 5, "answer": "2"}', "question"),
    ('{"question": "", "answer": "2"}', "question"),
    ('{"question": "1+1?", "answer": "2", "solution": 3}', "solution"),
    ('{"question": "1+1?"}', "answer"),
    ('{"question": "1+1?", "answer": 2', "JSON"),
]


@pytest.mark.parametrize("bad_line,what", TRAIN_BAD, ids=[b for b, _ in TRAIN_BAD])
def test_bad_training_row_names_file_line_and_reason(tmp_path, bad_line, what):
    path = _train(tmp_path, ['{"question": "1+1?", "answer": 2}', "", bad_line])
    with pytest.raises(ValueError) as info:
        _load_jsonl_problems(path)
    message = str(info.value)
    assert f"{path}:3:" in message, message
    assert what in message, message


def test_empty_training_file_fails_at_load(tmp_path):
    # was a ZeroDivisionError mid-run
    path = _train(tmp_path, ["", "  "])
    with pytest.raises(ValueError, match="no problems") as info:
        _load_jsonl_problems(path)
    assert str(path) in str(info.value)


def test_non_utf8_training_file_names_file_and_line(tmp_path):
    path = _train(tmp_path, ['{"question": "1+1?", "answer": 2}', '{"question": "caf\xe9?", "answer": 2}'.encode("latin-1")])
    with pytest.raises(ValueError, match="UTF-8") as info:
        _load_jsonl_problems(path)
    assert f"{path}:2:" in str(info.value)


def test_missing_training_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="nope.jsonl"):
        _load_jsonl_problems(tmp_path / "nope.jsonl")


def test_good_training_rows(tmp_path):
    rows = [{"question": "1+1?", "answer": 2}, {"question": "2+2?", "answer": "4", "solution": "\\boxed{4}"},
            {"question": "half?", "answer": 0.5}, {"question": "big?", "answer": 3.0}]
    path = _train(tmp_path, [json.dumps(r) for r in rows])
    problems = _load_jsonl_problems(path)
    assert [(p.question, p.answer, p.solution) for p in problems] == [
        ("1+1?", "2", None), ("2+2?", "4", "\\boxed{4}"), ("half?", "0.5", None), ("big?", "3", None)]
    assert [p.id for p in problems] == ["train/1", "train/2", "train/3", "train/4"]
