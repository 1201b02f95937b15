"""scope_lib.grading: one dispatcher, math answers to scope_lib.verify and code to the sandbox."""

from __future__ import annotations

import pytest

from scope_lib import grading
from scope_lib.worlds.code_benchmarks import load_code_benchmark
from scope_lib.grading.code import CodeTests
from scope_lib.config import load_config
from scope_lib.problem import Problem
from scope_lib.verify import grade_batch as math_grade_batch

ADD = CodeTests(kind="stdio", cases=(("1 2\n", "3\n"), ("5 7\n", "12\n")), timeout=6)
ADD_PROBLEM = Problem(id="taco/add", question="Read a and b, print a + b.", answer=ADD.to_json(), source="taco")
ADD_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"
ONE_CASE = Problem(id="taco/add1", question="Read a and b, print a + b.", source="taco",
                   answer=CodeTests(kind="stdio", cases=(("1 2\n", "3\n"),), timeout=6).to_json())
SLOW_ADD = "import time\ntime.sleep(0.8)\n" + ADD_PROGRAM  # 0.8 s per case


def fenced(program: str) -> str:
    return f"Here is my solution.\n```python\n{program}```\n"


@pytest.fixture(scope="module")
def humaneval():
    return load_code_benchmark("humaneval", limit=2)


def test_math_dispatches_to_verify():
    problems = [Problem(id="m/0", question="1+2?", answer="3", source="math500"),
                Problem(id="m/1", question="half?", answer="\\frac{1}{2}", source="math500")]
    responses = ["so \\boxed{3}", "\\boxed{0.5}", "\\boxed{4}", "no box"]
    pairs = [problems[0], problems[1], problems[0], problems[1]]
    verdicts = grading.grade("math", responses, pairs)
    assert verdicts == math_grade_batch(responses, [p.answer for p in pairs])
    assert verdicts[0] is True and verdicts[2] is False and verdicts[3] is False


def test_code_runs_each_response_against_its_own_problems_tests(humaneval):
    first, second = humaneval
    good, other_good = fenced(first.solution), fenced(second.solution)
    broken = fenced(first.question + "    return None\n")
    responses = [good, broken, "I cannot write code.", other_good, good, fenced(ADD_PROGRAM), fenced("print(0)\n")]
    problems = [first, first, first, second, second, ADD_PROBLEM, ADD_PROBLEM]
    # problem 0's canonical solution passes its own check, fails problem 1's (wrong function name)
    assert grading.grade("code", responses, problems) == [True, False, False, True, False, True, False]


def test_code_reports_agree_with_grade_and_show_the_sandbox_verdict(humaneval):
    first, _ = humaneval
    responses = [fenced(first.solution), "no program here", fenced(first.question + "    raise ValueError\n")]
    problems = [first] * 3
    reports = grading.code_reports(responses, problems)
    assert reports[1] == (None, None)
    (program, passed), _, (_, failed) = reports
    assert program == first.solution and passed.status == "passed" and passed.passed == passed.total == 1
    assert failed.status == "failed" and not failed.correct
    assert [r is not None and r.correct for _, r in reports] == grading.grade("code", responses, problems)


def test_timeout_override_applies_to_every_case():
    responses, problems = [fenced(SLOW_ADD)], [ONE_CASE]
    assert grading.grade("code", responses, problems) == [True]  # the problem's own 6 s per case
    tight = grading.CodeGrading(timeout_s=0.3)
    assert grading.grade("code", responses, problems, code=tight) == [False]
    (_, report), = grading.code_reports(responses, problems, code=tight)
    assert report.status == "timeout"


def test_memory_limit_reaches_the_sandbox():
    hog = "blob = bytearray(300 * 1024 * 1024)\n" + ADD_PROGRAM
    assert grading.grade("code", [fenced(hog)], [ADD_PROBLEM], code=grading.CodeGrading(memory_mb=1024)) == [True]
    assert grading.grade("code", [fenced(hog)], [ADD_PROBLEM], code=grading.CodeGrading(memory_mb=128)) == [False]


def test_raw_extraction_takes_the_whole_response():
    assert grading.grade("code", [ADD_PROGRAM], [ADD_PROBLEM]) == [False]  # no fenced block
    assert grading.grade("code", [ADD_PROGRAM], [ADD_PROBLEM], code=grading.CodeGrading(extract="raw")) == [True]


def test_grade_config_reads_the_reward_section():
    cfg = load_config("paper_code", overrides={"reward.code_timeout_s": 0.3})
    assert grading.grade_config(cfg, [fenced(SLOW_ADD)], [ONE_CASE]) == [False]
    cfg = load_config("paper_code")
    assert grading.grade_config(cfg, [fenced(SLOW_ADD)], [ONE_CASE]) == [True]
    options = grading.CodeGrading.from_config(load_config("paper_code", overrides={
        "reward.code_memory_mb": 2048, "reward.code_max_processes": 4, "reward.code_extract": "raw"}).reward)
    assert (options.memory_mb, options.max_processes, options.extract) == (2048, 4, "raw")
    assert (options.limits().memory_mb, options.limits().max_processes) == (2048, 4)
    math_cfg = load_config("tiny")
    assert grading.grade_config(math_cfg, ["\\boxed{7}"], [Problem(id="t", question="q", answer="7")]) == [True]


def test_each_verifier_refuses_the_others_problems(humaneval):
    with pytest.raises(ValueError, match=r"problems\[1\] \('humaneval/HumanEval/0'\).*kind 'code'"):
        grading.grade("math", ["\\boxed{1}", "x"], [Problem(id="m", question="q", answer="1"), humaneval[0]])
    with pytest.raises(ValueError, match=r"problems\[0\] \('m'\): its answer is not the JSON of code tests"):
        grading.grade("code", ["```python\nprint(1)\n```"], [Problem(id="m", question="q", answer="1")])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"kind: expected one of \('math', 'code'\), got 'python'"):
        grading.grade("python", [], [])
    with pytest.raises(ValueError, match=r"one per response \(2\), got 1"):
        grading.grade("math", ["a", "b"], [Problem(id="m", question="q", answer="1")])
    with pytest.raises(ValueError, match=r"problems\[0\]: expected a scope_lib.problem.Problem, got str"):
        grading.grade("math", ["a"], ["1"])
    with pytest.raises(ValueError, match="timeout_s"):
        grading.CodeGrading(timeout_s=-1)
    with pytest.raises(ValueError, match="memory_mb"):
        grading.CodeGrading(memory_mb=0)
    with pytest.raises(ValueError, match="extract"):
        grading.CodeGrading(extract="last_line")


def test_kind_of_sets(humaneval):
    math_problem = Problem(id="aime24/0", question="q", answer="1", source="aime24")
    assert grading.kind_of(humaneval) == "code" and grading.kind_of([ADD_PROBLEM]) == "code"
    assert grading.kind_of([math_problem]) == "math"
    with pytest.raises(ValueError, match=r"mine: mixes code problems \('humaneval/HumanEval/0'\) and math problems \('aime24/0'\)"):
        grading.kind_of([humaneval[0], math_problem], "mine")
    with pytest.raises(ValueError, match="at least one problem"):
        grading.kind_of([])


def test_code_instruction_asks_for_a_fenced_block(humaneval):
    assert grading.code_instruction(humaneval[0]) == grading.HUMANEVAL_INSTRUCTION
    assert grading.code_instruction(ADD_PROBLEM) == grading.PROGRAM_INSTRUCTION
    assert all("```python" in text for text in (grading.HUMANEVAL_INSTRUCTION, grading.PROGRAM_INSTRUCTION))
