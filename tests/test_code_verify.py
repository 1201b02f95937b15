"""The code verifier: test specs, program extraction, grading (single and batched)."""

from __future__ import annotations

import json

import pytest

from scope_lib.grading.code import CodeTests, extract_code, grade, grade_batch, grade_many, is_correct

ADD = CodeTests(kind="stdio", cases=(("1 2\n", "3\n"), ("10 -4\n", "6\n")), timeout=5)
ADD_PROGRAM = "a, b = map(int, input().split())\nprint(a + b)\n"


def _block(code: str, language: str = "python") -> str:
    return f"Here is my solution.\n```{language}\n{code}```\nDone."


# ---------------------------------------------------------------------------------------------
# test specs


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "unit"}, "tests.kind"),
    ({"kind": "stdio", "cases": ()}, "at least one"),
    ({"kind": "stdio", "cases": (("1", "2"), ("only input",))}, r"tests.cases\[1\]"),
    ({"kind": "stdio", "cases": (("1", 2),)}, r"tests.cases\[0\]"),
    ({"kind": "stdio", "cases": (("1", "2"),), "timeout": 0}, "tests.timeout"),
    ({"kind": "stdio", "cases": (("1", "2"),), "timeout": float("nan")}, "tests.timeout"),
    ({"kind": "stdio", "cases": (("1", "2"),), "float_tolerance": 2}, "tests.float_tolerance"),
    ({"kind": "call", "fn_name": "f", "cases": (([1], 2), ("not a list", 2))}, r"tests.cases\[1\]"),
    ({"kind": "call", "fn_name": "f", "cases": (([object()], 2),)}, r"tests.cases\[0\]: not plain data"),
    ({"kind": "call", "fn_name": "not valid", "cases": (([1], 2),)}, "tests.fn_name"),
    ({"kind": "call", "fn_name": "f", "cases": (([1], 2),), "compare": "fuzzy"}, "tests.compare"),
    ({"kind": "check", "test": "assert True", "entry_point": "f"}, "tests.test"),
    ({"kind": "check", "test": "def check(c): pass", "entry_point": None}, "tests.entry_point"),
])
def test_malformed_tests_fail_naming_the_field_or_case(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CodeTests(**kwargs)


def test_json_round_trip_keeps_tuples_floats_and_fields():
    tests = CodeTests(kind="call", fn_name="f", compare="taco", timeout=2.5, program_prelude="import math",
                      cases=(([(1, 2), 0.1], {"k": (3,)}), ([float("inf")], None)))
    back = CodeTests.from_json(tests.to_json())
    assert back == tests
    assert type(back.cases[0][0][0]) is tuple and back.cases[1][0][0] == float("inf")
    for spec in (ADD, CodeTests(kind="check", test="def check(c): pass", prelude="x = 1", entry_point="f")):
        assert CodeTests.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("text, message", [
    ("not json", "expected the JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"kind": "stdio", "cases": [["1", "2"]], "extra": 1}), "unknown field"),
    (json.dumps({"kind": "stdio", "cases": [["1"]]}), r"tests.cases\[0\]"),
    (json.dumps({"kind": "call", "fn_name": "f", "cases": [[[1], {"x": 1, "y": 2}]]}), "malformed tagged value"),
])
def test_malformed_tests_json_fails_naming_it(text, message):
    with pytest.raises(ValueError, match=message):
        CodeTests.from_json(text)


# ---------------------------------------------------------------------------------------------
# extraction


def test_extract_code_takes_the_last_python_block():
    response = "```python\nfirst()\n```\ntext\n```\nsecond()\n```\n```bash\nrm -rf /\n```\n"
    assert extract_code(response) == "second()\n"
    assert extract_code("```py\nx = 1\n```") == "x = 1\n"
    assert extract_code("no code at all") is None
    assert extract_code("```python\nunterminated") is None
    with pytest.raises(ValueError, match="response"):
        extract_code(None)


# ---------------------------------------------------------------------------------------------
# grading


def test_is_correct_stdio():
    assert is_correct(_block(ADD_PROGRAM), ADD)
    assert is_correct(ADD_PROGRAM, ADD.to_json(), extract="raw")  # tests as Problem.answer JSON
    assert not is_correct(_block(ADD_PROGRAM.replace("a + b", "a * b")), ADD)
    assert not is_correct("print(3)  # no code block", ADD)
    with pytest.raises(ValueError, match="extract"):
        is_correct(ADD_PROGRAM, ADD, extract="nothing")


def test_a_syntax_error_is_incorrect_not_an_error():
    report = grade("def broken(:\n    pass\n", ADD)
    assert not report.correct and report.status == "failed" and "SyntaxError" in report.detail
    assert not is_correct(_block("print(("), ADD)


def test_a_broken_test_is_an_error_naming_it():
    broken = CodeTests(kind="check", test="def check(candidate):\n    assert candidate(1) ==\n", entry_point="f",
                       meta={"id": "demo/7"})
    with pytest.raises(ValueError, match=r"demo/7.*the test itself is broken.*SyntaxError"):
        grade("def f(x):\n    return x\n", broken)


def test_call_tests_leetcode_style_and_taco_wrapping():
    two_sum = CodeTests(kind="call", fn_name="twoSum", timeout=5, cases=(([[2, 7, 11, 15], 9], [0, 1]), ([[3, 3], 6], [0, 1])))
    solution = ("class Solution:\n    def twoSum(self, nums, target):\n        seen = {}\n        for i, x in enumerate(nums):\n"
                "            if target - x in seen:\n                return (seen[target - x], i)\n            seen[x] = i\n")
    assert grade(solution, two_sum).correct  # a tuple counts as the expected list
    assert not grade("def twoSum(nums, target):\n    return [0, 0]\n", two_sum).correct
    wrapped = CodeTests(kind="call", fn_name="square", cases=(([3], [9]),), compare="taco", timeout=5)
    assert grade("def square(x):\n    return x * x\n", wrapped).correct
    assert not grade("def square(x):\n    return x * x\n", CodeTests(kind="call", fn_name="square", cases=(([3], [9]),))).correct


def test_float_tolerance_of_stdio_tests():
    tests = CodeTests(kind="stdio", cases=(("", "0.3333333333\n"),), float_tolerance=1e-6, timeout=5)
    assert grade("print(1 / 3)", tests).correct
    assert not grade("print(0.3334)", tests).correct
    assert not grade("print(1 / 3)", CodeTests(kind="stdio", cases=(("", "0.3333333333\n"),), timeout=5)).correct


def test_humaneval_style_check_with_prelude_helpers():
    prelude = "def helper(x):\n    return x + 1\n\ndef inc_all(xs):\n    '''add one to each'''\n"
    test = "def check(candidate):\n    assert candidate([1, 2]) == [helper(1), helper(2)]\n    assert inc_all([0]) == [1]\n"
    tests = CodeTests(kind="check", test=test, prelude=prelude, entry_point="inc_all", timeout=5)
    assert is_correct(_block("def inc_all(xs):\n    return [x + 1 for x in xs]\n"), tests)
    assert not is_correct(_block("def inc_all(xs):\n    return xs\n"), tests)


def test_per_case_timeout_of_call_tests():
    slow_on_big = CodeTests(kind="call", fn_name="f", timeout=1, cases=(([1], 1), ([10 ** 9], 10 ** 9)))
    report = grade("def f(n):\n    i = 0\n    while i < n:\n        i += 1\n    return i\n", slow_on_big)
    assert report.status == "timeout" and report.passed == 1, report
    assert report.wall_seconds < 1 + 5


def test_grade_batch_in_parallel_matches_one_by_one():
    responses = [_block(ADD_PROGRAM), _block("print(3)"), "no code", _block(ADD_PROGRAM.replace("+", "-")),
                 _block("while True:\n    pass\n"), _block(ADD_PROGRAM)]
    tests = [ADD, ADD, ADD, ADD, CodeTests(kind="stdio", cases=(("1 2\n", "3\n"),), timeout=1), ADD.to_json()]
    assert grade_batch(responses, tests, workers=2) == [True, False, False, False, False, True]
    assert grade_many([], [], workers=2) == []


def test_grade_batch_checks_every_spec_before_running():
    with pytest.raises(ValueError, match="tests: expected 2 items"):
        grade_batch(["a", "b"], [ADD])
    with pytest.raises(ValueError, match="expected the JSON"):
        grade_batch(["no code here", _block(ADD_PROGRAM)], ["{broken", ADD])
    with pytest.raises(ValueError, match=r"responses\[1\]"):
        grade_batch(["x", None], [ADD, ADD])
    with pytest.raises(ValueError, match="workers"):
        grade_many(["x"], [ADD], workers=0)
