"""Code benchmark loaders: HumanEval from its wheel; TACO (Codeforces, training corpus) and
LiveCodeBench on small local fixtures written here (the hub is not reachable in tests), through
the same parsing code the hub rows go through."""

from __future__ import annotations

import base64
import json
import pickle
import random
import sys
import types
import zlib
from datetime import datetime

import pytest

from scope_lib.worlds import code_benchmarks as cb
from scope_lib.grading.code import CodeTests, grade, grade_many, is_correct


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# ---------------------------------------------------------------------------------------------
# HumanEval


def test_humaneval_ships_164_problems_with_parsable_tests():
    problems = cb.load_code_benchmark("humaneval")
    assert len(problems) == 164 and len({p.id for p in problems}) == 164
    assert problems[0].id == "humaneval/HumanEval/0" and problems[0].source == "humaneval"
    tests = [CodeTests.from_json(p.answer) for p in problems]
    assert all(t.kind == "check" and t.timeout == cb.HUMANEVAL_TIMEOUT for t in tests)
    assert tests[0].program_prelude == "from typing import List"  # the prompt's import goes before the program
    assert len(cb.load_code_benchmark("humaneval", limit=5)) == 5


def test_humaneval_reference_solutions_pass_and_stubs_fail():
    problems = cb.load_code_benchmark("humaneval")
    # Problems whose test reaches into the prompt: helpers (32 poly, 38 encode_cyclic, 50
    # encode_shift) and the tested function by name (33).
    sample = [problems[i] for i in (0, 1, 10, 32, 33, 38, 50, 95, 163)]
    solutions = [p.solution for p in sample]
    stubs = [p.meta["prompt"] + "    return None\n" for p in sample]
    reports = grade_many(solutions + stubs, [p.answer for p in sample] * 2, workers=2)
    assert [r.correct for r in reports] == [True] * len(sample) + [False] * len(sample), \
        [(p.id, r.status, r.detail) for p, r in zip(sample * 2, reports) if r.correct != (r in reports[:len(sample)])]
    # A chat-style answer: only the function, in a code block, without the prompt's import.
    body = sample[0].solution[len(sample[0].meta["prompt"]):]
    code = "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n" + body
    assert is_correct(f"```python\n{code}```", sample[0].answer)


@pytest.mark.slow
def test_every_humaneval_reference_solution_passes():
    problems = cb.load_code_benchmark("humaneval")
    reports = grade_many([p.solution for p in problems], [p.answer for p in problems], workers=2)
    assert [p.id for p, r in zip(problems, reports) if not r.correct] == []


def test_humaneval_bad_local_file_names_file_and_line(tmp_path):
    good = {"task_id": "X/0", "prompt": "def f(x):\n", "canonical_solution": "    return x\n",
            "test": "def check(candidate):\n    assert candidate(1) == 1\n", "entry_point": "f"}
    file = _write_jsonl(tmp_path / "humaneval.jsonl", [good, {**good, "test": None}])
    with pytest.raises(ValueError, match=r"humaneval.jsonl:2: field 'test'"):
        cb.load_code_benchmark("humaneval", tmp_path)
    file.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"humaneval.jsonl:2: bad JSON"):
        cb.load_code_benchmark("humaneval", file)
    with pytest.raises(ValueError, match=r"humaneval.jsonl:2: bad JSON"):  # the whole file is read, whatever the limit
        cb.load_code_benchmark("humaneval", file, limit=1)
    file.write_text(json.dumps(good) + "\n" + json.dumps({**good, "task_id": "X/1"}) + "\n")
    assert [p.id for p in cb.load_code_benchmark("humaneval", file, limit=1)] == ["humaneval/X/0"]
    with pytest.raises(FileNotFoundError, match="humaneval.jsonl"):
        cb.load_code_benchmark("humaneval", tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# TACO: Codeforces and the training corpus


def _taco_row(name, source, question, tests, solutions=("print(1)",), starter=""):
    return {"name": name, "source": source, "question": question, "starter_code": starter, "difficulty": "EASY",
            "solutions": json.dumps(list(solutions)), "input_output": json.dumps(tests) if isinstance(tests, dict) else tests}


def _taco_rows():
    rows = [_taco_row(f"cf{i}", "codeforces", f"Print the sum of two numbers, variant {i}.",
                      {"inputs": [f"{i} 1\n", "2 2\n"], "outputs": [f"{i + 1}\n", "4\n"]}) for i in range(6)]
    rows += [
        _taco_row("cc0", "codechef", "Double it.", {"inputs": [["3\n"]], "outputs": [["6"]]}),  # lines as lists
        _taco_row("lc0", "leetcode", "Square it.", {"fn_name": "square", "inputs": [[3], [4]], "outputs": [[9], 16]},
                  starter="class Solution:\n    def square(self, x):"),
        _taco_row("none", "aizu", "No tests here.", {"inputs": [], "outputs": []}),
        _taco_row("empty", "aizu", "No tests at all.", ""),
        _taco_row("cf-call", "codeforces", "Called, not stdin.", {"fn_name": "f", "inputs": [[1]], "outputs": [1]}),
    ]
    # The same statement as cf0, spaced and cased differently: leaks unless excluded by statement.
    rows.append(_taco_row("cf0-copy", "Codeforces", "print  the sum of two numbers,\nvariant 0.",
                          {"inputs": ["5 5\n"], "outputs": ["10\n"]}))
    return rows


def test_codeforces_sample_is_fixed_by_statement_and_held_out_of_training(tmp_path, monkeypatch):
    monkeypatch.setattr(cb, "CODEFORCES_SIZE", 3)
    rows = _taco_rows()
    file = _write_jsonl(tmp_path / "taco.jsonl", rows)
    chosen = cb.load_code_benchmark("codeforces", file)
    assert len(chosen) == 3 and all(p.source == "codeforces" for p in chosen)
    assert all(CodeTests.from_json(p.answer).kind == "stdio" for p in chosen)  # stdin/stdout problems only
    assert CodeTests.from_json(chosen[0].answer).float_tolerance == cb.CODEFORCES_TOLERANCE
    shuffled = rows[:]
    random.Random(0).shuffle(shuffled)
    again = cb.load_code_benchmark("codeforces", _write_jsonl(tmp_path / "shuffled.jsonl", shuffled))
    assert [p.question for p in again] == [p.question for p in chosen]  # row order does not change the sample
    heldout = cb.codeforces_heldout(file)
    assert heldout == {cb.statement_key(p.question) for p in chosen}
    train = cb.load_taco_train(file)
    train_keys = {p.meta["statement_key"] for p in train}
    assert not train_keys & heldout
    assert {p.id for p in train} >= {"taco/cc0", "taco/lc0"} and not {"taco/none", "taco/empty"} & {p.id for p in train}
    assert len({cb.statement_key(p.question) for p in chosen}) == 3  # a repeated statement is one problem
    copied_statement_held_out = cb.statement_key(rows[0]["question"]) in heldout
    assert ("taco/cf0-copy" in {p.id for p in train}) is not copied_statement_held_out
    # every row but the two without tests and those sharing a held-out statement
    assert len(train) == len(rows) - 2 - 3 - (1 if copied_statement_held_out else 0)


def test_taco_rows_grade_in_the_sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(cb, "CODEFORCES_SIZE", 6)
    file = _write_jsonl(tmp_path / "taco.jsonl", _taco_rows())
    train = {p.id: p for p in cb.load_taco_train(file, exclude=frozenset())}
    assert is_correct("a, b = map(int, input().split())\nprint(a + b)", train["taco/cf3"].answer, extract="raw")
    assert not is_correct("print(0)", train["taco/cf3"].answer, extract="raw")
    assert is_correct("print(2 * int(input()))", train["taco/cc0"].answer, extract="raw")
    square = "class Solution:\n    def square(self, x):\n        return x * x\n"
    assert is_correct(square, train["taco/lc0"].answer, extract="raw")  # [9] accepted for 9 (TACO's rule)
    assert "Use this starter code" in train["taco/lc0"].question and train["taco/lc0"].solution == "print(1)"


def test_taco_bad_rows_name_file_and_line(tmp_path):
    rows = _taco_rows()
    rows[2]["input_output"] = '{"inputs": ["1"], "outputs": '
    with pytest.raises(ValueError, match=r"taco.jsonl:3: field 'input_output': bad JSON"):
        cb.load_taco_train(_write_jsonl(tmp_path / "taco.jsonl", rows), exclude=frozenset())
    rows = _taco_rows()
    rows[1]["input_output"] = json.dumps({"inputs": ["1", "2"], "outputs": ["1"]})
    with pytest.raises(ValueError, match=r"taco.jsonl:2: .*2 inputs but 1 outputs"):
        cb.load_code_benchmark("codeforces", _write_jsonl(tmp_path / "taco.jsonl", rows))
    rows = _taco_rows()
    rows[4]["question"] = None
    with pytest.raises(ValueError, match=r"taco.jsonl:5: field 'question'"):
        cb.load_code_benchmark("codeforces", _write_jsonl(tmp_path / "taco.jsonl", rows))


# ---------------------------------------------------------------------------------------------
# LiveCodeBench


def _packed(tests) -> str:
    """private_test_cases as the lite dataset stores them: base64(zlib(pickle(json)))."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def _lcb_row(question_id, date, public, private="", platform="atcoder", metadata="{}", starter=""):
    return {"question_title": f"t{question_id}", "question_content": f"Problem {question_id}.", "platform": platform,
            "question_id": question_id, "contest_id": "c1", "contest_date": date, "starter_code": starter,
            "difficulty": "easy", "public_test_cases": json.dumps(public), "private_test_cases": private, "metadata": metadata}


def _lcb_rows():
    add = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    more = [{"input": "5 5\n", "output": "10\n", "testtype": "stdin"}]
    functional = [{"input": "[2, 7, 11, 15]\n9", "output": "[0, 1]", "testtype": "functional"}]
    return [
        _lcb_row("early", "2024-07-31T00:00:00", add),
        _lcb_row("first-day", "2024-08-01T00:00:00", add, _packed(more)),
        _lcb_row("leet", "2024-10-05T00:00:00", functional, json.dumps(functional), platform="leetcode",
                 metadata=json.dumps({"func_name": "twoSum"}), starter="class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:"),
        _lcb_row("last-day", "2025-02-01T00:00:00", add),
        _lcb_row("late", "2025-02-02T00:00:00", add),
        _lcb_row("first-day", "2024-08-01T00:00:00", add),  # a later release repeats a problem
    ]


def test_livecodebench_window_dedupe_and_tests(tmp_path):
    file = _write_jsonl(tmp_path / "livecodebench.jsonl", _lcb_rows())
    problems = cb.load_code_benchmark("livecodebench", tmp_path)
    assert [p.id for p in problems] == ["livecodebench/first-day", "livecodebench/leet", "livecodebench/last-day"]
    first = CodeTests.from_json(problems[0].answer)
    assert first.kind == "stdio" and first.cases == (("1 2\n", "3\n"), ("5 5\n", "10\n"))  # public + unpacked private
    assert first.program_prelude == cb.LCB_PRELUDE
    leet = CodeTests.from_json(problems[1].answer)
    assert (leet.kind, leet.fn_name, leet.cases[0]) == ("call", "twoSum", ([[2, 7, 11, 15], 9], [0, 1]))
    # `List` comes from LiveCodeBench's star imports, as in its own harness
    solution = ("class Solution:\n    def twoSum(self, nums: List[int], target: int) -> List[int]:\n        seen = {}\n"
                "        for i, x in enumerate(nums):\n            if target - x in seen:\n                return [seen[target - x], i]\n"
                "            seen[x] = i\n")
    assert grade(solution, leet).correct
    assert is_correct("print(sum(map(int, input().split())))", problems[0].answer, extract="raw")
    window = (datetime(2024, 7, 1), datetime(2024, 9, 1))
    assert [p.id for p in cb.load_code_benchmark("livecodebench", file, window=window)] == ["livecodebench/early",
                                                                                           "livecodebench/first-day"]


def test_livecodebench_refuses_pickles_that_reference_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("this would run",))

    rows = _lcb_rows()
    rows[1]["private_test_cases"] = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(ValueError, match=r"livecodebench.jsonl:2: field 'private_test_cases'.*refusing to load builtins.print"):
        cb.load_code_benchmark("livecodebench", _write_jsonl(tmp_path / "livecodebench.jsonl", rows))


@pytest.mark.parametrize("field, value, message", [
    ("contest_date", "someday", "field 'contest_date'"),
    ("public_test_cases", "[{", "field 'public_test_cases': bad JSON"),
    ("public_test_cases", json.dumps([{"input": 1, "output": "2", "testtype": "stdin"}]), "test 0: expected"),
    ("private_test_cases", "not base64 !!", "field 'private_test_cases'"),
    ("question_content", "", "field 'question_content'"),
])
def test_livecodebench_bad_rows_name_file_and_line(tmp_path, field, value, message):
    rows = _lcb_rows()
    rows[3][field] = value
    with pytest.raises(ValueError, match=r"livecodebench.jsonl:4: " + message):
        cb.load_code_benchmark("livecodebench", _write_jsonl(tmp_path / "livecodebench.jsonl", rows))


# ---------------------------------------------------------------------------------------------
# the hub path, through a stand-in `datasets`


def test_hub_rows_go_through_the_same_parsing(monkeypatch):
    calls = []

    def load_dataset(name, *args, **kwargs):
        calls.append((name, kwargs))
        return _lcb_rows() if name == "json" else _taco_rows()

    monkeypatch.delenv("SCOPE_CODE_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    problems = cb.load_code_benchmark("livecodebench")
    assert [p.id for p in problems] == ["livecodebench/first-day", "livecodebench/leet", "livecodebench/last-day"]
    name, kwargs = calls[0]
    assert name == "json" and kwargs["data_files"][0] == "hf://datasets/livecodebench/code_generation_lite/test.jsonl"
    assert len(cb.load_taco_train(exclude=frozenset())) == len(_taco_rows()) - 2
    assert calls[-1][0] == "BAAI/TACO"


def test_hub_unavailable_says_how_to_load_locally(monkeypatch):
    monkeypatch.delenv("SCOPE_CODE_DATA_DIR", raising=False)

    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=offline))
    with pytest.raises(FileNotFoundError, match="SCOPE_CODE_DATA_DIR.*ConnectionError"):
        cb.load_code_benchmark("livecodebench")
    with pytest.raises(FileNotFoundError, match="BAAI/TACO.*ConnectionError"):
        cb.load_code_benchmark("codeforces")
    with pytest.raises(ValueError, match="name"):
        cb.load_code_benchmark("mbpp")


def test_paper_code_preset_loads():
    from scope_lib.config import load_config

    cfg = load_config("configs/paper_code.yaml")
    assert (cfg.data.train, cfg.eval.k, cfg.eval.top_p, cfg.rollout.group_size) == ("BAAI/TACO", 32, 0.95, 8)
    assert (cfg.model.student, cfg.model.teacher) == ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "Skywork/Skywork-OR1-7B")
