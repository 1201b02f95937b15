"""Training data sources of load_world beyond the tiny world: JSONL files and hub datasets."""

import sys
import types

import pytest

from scope_lib.world import _load_hub_problems, _load_jsonl_problems


def test_jsonl_problems_and_malformed_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text('{"question": "1+1?", "answer": 2}\n\n{"question": "2+2?", "answer": "4"}\n')
    problems = _load_jsonl_problems(path)
    assert [(p.question, p.answer) for p in problems] == [("1+1?", "2"), ("2+2?", "4")]
    path.write_text('{"question": "1+1?", "answer": 2}\n{"question": "no answer"}\n')
    with pytest.raises(ValueError, match=r"train.jsonl:2"):
        _load_jsonl_problems(path)


def _fake_hub(monkeypatch, rows: list[dict], columns: list[str]) -> list:
    """A stand-in `datasets` whose hub holds `rows`; returns the calls it received."""
    class Rows(list):
        column_names = columns

    calls = []

    def load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return Rows(rows)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hub_problems_use_deepmath_columns(monkeypatch):
    calls = _fake_hub(monkeypatch, [{"question": "q1", "final_answer": 3}, {"question": "q2", "final_answer": "x^2"},
                                    {"question": "q3", "final_answer": 27.0}], ["question", "final_answer", "difficulty"])
    problems = _load_hub_problems("zwhe99/DeepMath-103K")
    assert calls == [("zwhe99/DeepMath-103K", None, "train")]
    assert [(p.id, p.answer) for p in problems] == [("zwhe99/DeepMath-103K/0", "3"), ("zwhe99/DeepMath-103K/1", "x^2"),
                                                    ("zwhe99/DeepMath-103K/2", "27")]


def test_hub_rows_are_checked_like_file_rows(monkeypatch):
    _fake_hub(monkeypatch, [{"question": "q1", "final_answer": "1"}, {"question": "q2", "final_answer": None}],
              ["question", "final_answer"])
    with pytest.raises(ValueError, match=r"zwhe99/DeepMath-103K row 1: final_answer: expected a string or number, got null"):
        _load_hub_problems("zwhe99/DeepMath-103K")


def test_jsonl_answers_keep_their_text(tmp_path):
    # A column mixing strings and numbers: datasets alone reads "007" as 7.
    path = tmp_path / "train.jsonl"
    path.write_text('{"question": "a", "answer": "007"}\n{"question": "b", "answer": 7}\n{"question": "c", "answer": "1.0"}\n')
    assert [p.answer for p in _load_jsonl_problems(path)] == ["007", "7", "1.0"]
