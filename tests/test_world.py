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


def test_hub_problems_use_deepmath_columns(monkeypatch):
    class Rows(list):
        column_names = ["question", "final_answer", "difficulty"]

    fake = types.SimpleNamespace(load_dataset=lambda name, config=None, split=None: Rows([{"question": "q1", "final_answer": 3},
                                                                        {"question": "q2", "final_answer": "x^2"}]))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    problems = _load_hub_problems("zwhe99/DeepMath-103K")
    assert [(p.id, p.answer) for p in problems] == [("zwhe99/DeepMath-103K/0", "3"), ("zwhe99/DeepMath-103K/1", "x^2")]
