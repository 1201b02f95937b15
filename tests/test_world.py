"""Training data sources of load_world beyond the tiny world: JSONL files, hub datasets, and the
code setting (TACO training prompts, code eval sets, code prompts)."""

import json
import sys
import types

import pytest
import torch

from scope_lib import smol
from scope_lib.grading.code import CodeTests, is_correct
from scope_lib.config import load_config
from scope_lib.grading import HUMANEVAL_INSTRUCTION, PROGRAM_INSTRUCTION
from scope_lib.world import WorldSpec, _load_code_train, _load_hub_problems, _load_jsonl_problems, load_world


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


# --- the code setting: TACO training prompts, code eval sets, code prompts --------------------

def _taco_row(name, source, question, inputs, outputs):
    return {"name": name, "source": source, "question": question, "starter_code": "", "difficulty": "EASY",
            "solutions": json.dumps(["print(1)"]), "input_output": json.dumps({"inputs": inputs, "outputs": outputs})}


def _write_taco(folder):
    """A TACO file: two Codeforces rows (fewer than 500, so both are held-out evaluation
    problems), two trainable rows and one without tests."""
    rows = [_taco_row("cf-a", "codeforces", "Print a + b.", ["1 2\n"], ["3\n"]),
            _taco_row("cf-b", "codeforces", "Print a * b.", ["2 3\n"], ["6\n"]),
            _taco_row("cc-double", "codechef", "Double n.", ["4\n"], ["8\n"]),
            _taco_row("at-neg", "atcoder", "Negate n.", ["5\n"], ["-5\n"]),
            _taco_row("no-tests", "aizu", "Nothing to test.", [], [])]
    file = folder / "taco.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return file


def test_code_training_data_is_taco_minus_codeforces_eval_problems(tmp_path, monkeypatch):
    file = _write_taco(tmp_path)
    problems = _load_code_train(str(file))
    assert [p.question for p in problems] == ["Double n.", "Negate n."]  # held-out and test-less rows left out
    assert all(p.source == "taco" for p in problems)
    assert is_correct("```python\nprint(2 * int(input()))\n```", problems[0].answer)
    assert not is_correct("```python\nprint(int(input()))\n```", problems[0].answer)
    # BAAI/TACO reads the hub, or SCOPE_CODE_DATA_DIR's taco.jsonl offline
    monkeypatch.setenv("SCOPE_CODE_DATA_DIR", str(tmp_path))
    assert [p.id for p in _load_code_train("BAAI/TACO")] == [p.id for p in problems]
    with pytest.raises(ValueError, match=r"data\.train '.*missing\.jsonl': no such file"):
        _load_code_train(str(tmp_path / "missing.jsonl"))
    only_cf = tmp_path / "cf.jsonl"
    only_cf.write_text("".join(line + "\n" for line in file.read_text().splitlines()[:2]))
    with pytest.raises(ValueError, match=r"cf\.jsonl': no TACO row with usable tests"):
        _load_code_train(str(only_cf))


class _ChatTokenizer:
    """Stands in for SmolLM2's tokenizer: its chat template writes the user turn between markers."""

    chat_template = "user/assistant"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=True):
        return "".join(f"<{m['role']}>{m['content']}</{m['role']}>" for m in messages) + "<assistant>"


@pytest.fixture
def fake_smol(monkeypatch):
    monkeypatch.setattr(smol, "load_smol", lambda dtype=None: (torch.nn.Linear(1, 1), _ChatTokenizer()))


def test_code_world_loads_taco_code_sets_and_code_prompts(tmp_path, monkeypatch, fake_smol):
    _write_taco(tmp_path)
    monkeypatch.setenv("SCOPE_CODE_DATA_DIR", str(tmp_path))
    cfg = load_config("smol", overrides={"reward.verifier": "code", "data.train": "BAAI/TACO",
                                         "data.eval_sets": ["humaneval", "codeforces"], "data.eval_problems_per_set": 3})
    world = load_world(WorldSpec.from_config(cfg), need_teacher=False)
    assert [p.question for p in world.train_problems] == ["Double n.", "Negate n."]
    assert list(world.eval_sets) == ["humaneval", "codeforces"]
    humaneval, codeforces = world.eval_sets["humaneval"], world.eval_sets["codeforces"]
    assert [p.id for p in humaneval] == ["humaneval/HumanEval/0", "humaneval/HumanEval/1", "humaneval/HumanEval/2"]
    assert sorted(p.question for p in codeforces) == ["Print a * b.", "Print a + b."]  # the held-out ones
    assert all(CodeTests.from_json(p.answer).kind == "stdio" for p in codeforces + world.train_problems)
    prompt = world.format_prompt(humaneval[0])
    assert humaneval[0].question.strip() in prompt and HUMANEVAL_INSTRUCTION in prompt and "boxed" not in prompt
    prompt = world.format_prompt(world.train_problems[0])
    assert prompt.startswith("<user>Double n.\n") and PROGRAM_INSTRUCTION in prompt and "boxed" not in prompt


def test_math_world_prompts_are_unchanged(fake_smol):
    cfg = load_config("smol", overrides={"data.eval_sets": []})
    world = load_world(WorldSpec.from_config(cfg), need_teacher=False)
    prompt = world.format_prompt(world.train_problems[0])
    assert smol.BOXED_INSTRUCTION in prompt and "```python" not in prompt


def test_code_verifier_refuses_a_tiny_student_before_building_it(monkeypatch, tmp_path):
    import scope_lib.world as world_module

    monkeypatch.chdir(tmp_path)
    (tmp_path / "taco.jsonl").touch()  # data.train files must exist at load

    monkeypatch.setattr(world_module, "_tiny_world", lambda *a: pytest.fail("the tiny world was built"))
    cfg = load_config("tiny", overrides={"reward.verifier": "code", "data.train": "taco.jsonl", "data.eval_sets": []})
    with pytest.raises(ValueError, match=r"reward\.verifier: 'code' needs a model that writes Python.*'tiny_routes' is a tiny world"):
        load_world(WorldSpec.from_config(cfg))


def test_world_spec_holds_model_and_data_only(monkeypatch, tmp_path):
    import scope_lib.world as world_module
    from scope_lib.worlds import routes

    base = load_config("tiny", overrides={"data.eval_sets": ["tiny_validation"], "data.eval_problems_per_set": 3})
    other = load_config("tiny", overrides={"data.eval_sets": ["tiny_validation"], "data.eval_problems_per_set": 3,
                                           "seed": 7, "method": "grpo", "optim.lr": 1e-3, "steps": 5})
    spec = WorldSpec.from_config(base)
    assert spec == WorldSpec.from_config(other)  # seed, method and optimiser are not part of it
    assert (spec.student, spec.train, spec.eval_sets, spec.eval_problems_per_set, spec.local_teacher) == (
        base.model.student, "tiny", ("tiny_validation",), 3, True)
    assert WorldSpec.from_config(load_config("tiny", overrides={"teacher.backend": "vllm_server", "scope.kl_estimator": "sampled"})).local_teacher is False
    with pytest.raises(ValueError, match=r"spec: expected a world\.WorldSpec .*got TrainConfig"):
        load_world(base)
    # the one seeded draw, the tiny training pool, takes load_world's train_seed
    monkeypatch.setattr(world_module, "_tiny_world", lambda name, progress: types.SimpleNamespace(
        student=None, teacher=None, tokenizer=None, config=types.SimpleNamespace(key=lambda: "stub")))
    first, again = load_world(spec), load_world(spec, train_seed=0)
    seeded = load_world(spec, train_seed=7)
    assert [p.question for p in first.train_problems] == [p.question for p in again.train_problems]
    assert [p.question for p in seeded.train_problems] == [p.question for p in routes.train_pool(seed=7)]
    assert [p.question for p in seeded.train_problems] != [p.question for p in first.train_problems]
    assert [p.question for p in seeded.eval_sets["validation"]] == [p.question for p in first.eval_sets["validation"]]
