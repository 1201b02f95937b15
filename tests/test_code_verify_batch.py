"""grade_many's batch path (`sandbox.judge_many`, grouped by timeout) returns what grade() returns."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from scope_lib.grading import sandbox
from scope_lib.grading.code import CodeTests, grade, grade_batch, grade_many

ADD = CodeTests(kind="stdio", cases=(("1 2\n", "3\n"), ("10 -4\n", "6\n")), timeout=2)
ADD_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"
CALL = CodeTests(kind="call", fn_name="add", timeout=1, cases=(([1, 2], 3), ([2, 2], 4)))
CHECK = CodeTests(kind="check", timeout=3, entry_point="add",
                  test="def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n")
PRELUDED = CodeTests(kind="call", fn_name="root", timeout=2, program_prelude="from math import *",
                     cases=(([16], 4.0),))
ADD_FN = "def add(a, b):\n    return a + b\n"
LOOP_FN = "def add(a, b):\n    while True:\n        pass\n"

MIXED = [
    (ADD_PROGRAM, ADD),                                      # correct, stdio
    ("print(3)", ADD),                                       # wrong on the second case
    ("def f(:\n", ADD),                                      # syntax error
    (ADD_FN, CALL),                                          # correct, call
    ("raise ValueError('boom')", ADD),                       # raises
    (LOOP_FN, CALL),                                         # times out (1 s per case)
    ("def add(a, b):\n    return a - b\n", CHECK),           # wrong, check
    (ADD_FN, CHECK),                                         # correct, check
    ("def root(x):\n    return sqrt(x)\n", PRELUDED),        # needs the program prelude
    ("while True:\n    pass\n", CodeTests(kind="stdio", cases=(("", "1\n"),), timeout=1)),  # times out, stdio
    (ADD_FN, CALL.to_json()),                                # tests as JSON
    ("def add(a, b):\n    raise KeyError(a)\n", CALL),       # raises, call
]


@pytest.fixture(scope="module", autouse=True)
def _isolation_available():
    sandbox.check_isolation()


def _key(report):
    return (report.status, report.passed, report.total, report.detail, report.stdout, report.stderr)


@pytest.mark.parametrize("workers", [1, 2])
def test_batch_path_returns_what_grade_returns_in_order(workers):
    programs, tests = [p for p, _ in MIXED], [t for _, t in MIXED]
    batch = grade_many(programs, tests, workers=workers)
    single = [grade(p, t) for p, t in MIXED]
    assert [_key(r) for r in batch] == [_key(r) for r in single]
    assert [r.correct for r in batch] == [True, False, False, True, False, False, False, True, True, False, True, False]
    assert batch[5].status == "timeout" and batch[9].status == "timeout"
    assert "SyntaxError" in batch[2].detail


def test_batch_path_calls_judge_many_with_fewer_launches(monkeypatch):
    calls, launches = [], []
    real_many, real_batch, real_execute = sandbox.judge_many, sandbox._execute_batch, sandbox._execute

    def counting_many(sources, tests, timeout=6.0, **kwargs):
        calls.append((len(sources), timeout))
        return real_many(sources, tests, timeout, **kwargs)

    monkeypatch.setattr(sandbox, "judge_many", counting_many)
    monkeypatch.setattr(sandbox, "_execute_batch", lambda *a, **k: launches.append("batch") or real_batch(*a, **k))
    monkeypatch.setattr(sandbox, "_execute", lambda *a, **k: launches.append("single") or real_execute(*a, **k))
    quick = CodeTests(kind="stdio", cases=(("1 2\n", "3\n"),), timeout=3)
    programs = [ADD_PROGRAM] * 8 + [ADD_FN] * 4
    tests = [ADD] * 4 + [quick] * 4 + [CALL] * 4
    reports = grade_many(programs, tests, workers=2)
    assert [r.correct for r in reports] == [True] * 12
    assert calls and sum(n for n, _ in calls) == 12
    assert {timeout for _, timeout in calls} == {1.0, 2.0, 3.0}  # one timeout per call, each problem's own
    assert 0 < len(launches) < len(programs) and "single" not in launches


def test_a_group_is_shared_out_over_the_workers_only_in_chunks_worth_a_launch(monkeypatch):
    sizes = []

    def fake_many(sources, tests, timeout=6.0, **kwargs):
        sizes.append(len(sources))
        return [SimpleNamespace(status="passed", correct=True)] * len(sources)

    monkeypatch.setattr(sandbox, "judge_many", fake_many)
    expected = {(16, 2): [16], (40, 2): [40], (64, 2): [32, 32], (128, 2): [64, 64], (200, 2): [50] * 4, (128, 8): [32] * 4}
    for (count, workers), chunks in expected.items():
        sizes.clear()
        reports = grade_many([ADD_FN] * count, [CALL] * count, workers=workers)
        assert len(reports) == count and sorted(sizes) == chunks, (count, workers, sizes)


def test_a_broken_test_in_a_batch_raises_naming_it():
    broken = CodeTests(kind="check", test="def check(candidate):\n    assert candidate(1) ==\n", entry_point="add",
                       meta={"id": "demo/7"})
    with pytest.raises(ValueError, match=r"demo/7.*the test itself is broken.*SyntaxError"):
        grade_many([ADD_PROGRAM, ADD_FN, ADD_FN], [ADD, broken, CALL], workers=2)
    with pytest.raises(ValueError, match=r"demo/7.*the test itself is broken"):
        grade_batch(["```python\n" + ADD_FN + "```"], [broken])


def test_a_non_str_program_raises_like_grade():
    with pytest.raises(ValueError, match="program: expected str, got int"):
        grade_many([ADD_PROGRAM, 3], [ADD, ADD], workers=2)


def test_other_isolation_keeps_one_judge_per_program(monkeypatch):
    def no_batch(*args, **kwargs):
        raise AssertionError("judge_many used outside bwrap")

    judged = []

    def fake_judge(source, tests, timeout=6.0, *, limits=None, isolation="bwrap"):
        judged.append((source, timeout, isolation))
        return SimpleNamespace(status="passed", correct=True)

    monkeypatch.setattr(sandbox, "judge_many", no_batch)
    monkeypatch.setattr(sandbox, "judge", fake_judge)
    reports = grade_many([ADD_PROGRAM, "print(3)"], [ADD, CALL], workers=2, isolation="rlimits_only")
    assert [r.correct for r in reports] == [True, True]
    assert sorted(judged) == sorted([(ADD_PROGRAM, 2, "rlimits_only"), ("print(3)", 1, "rlimits_only")])
