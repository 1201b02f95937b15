"""The program a code answer is graded on, taken as real models write answers:
the block (or, unfenced, the top-level definitions) that defines the entry point, else the last
block; `raw` and a callable extractor unchanged; no code at all is wrong, never a crash."""

import pytest

from scope_lib.grading.code import CodeTests, extract_code, extract_program, grade_batch
from scope_lib.grading import CodeGrading, code_reports, grade
from scope_lib.problem import Problem

ADD = CodeTests(kind="check", test="def check(candidate):\n    assert candidate(2, 3) == 5\n", entry_point="add",
                timeout=5)
CALL = CodeTests(kind="call", fn_name="twice", cases=(([2], 4),), timeout=5)

FUNCTION_THEN_EXAMPLE = """Here is the function:

```python
def add(a, b):
    return a + b
```

Example usage:

```python
print(add(2, 3))  # 5
```
"""
PROSE_BETWEEN = """First a helper.

```python
def _plus(a, b):
    return a + b
```

Then the answer, which uses it:

```python
def add(a, b):
    return _plus(a, b) if False else a + b
```

That's all; it runs in O(1).
"""
NO_FENCE = """Sure! Here is my solution.

import math

def add(a, b):
    # adds two numbers
    return a + b

print(add(2, 3))
This prints 5.
"""
TWO_DEFINITIONS = """A first try:

```python
def add(a, b):
    return a - b
```

Oops, that subtracts. Fixed:

```python
def add(a, b):
    return a + b
```

```python
assert add(1, 1) == 2
```
"""
SOLUTION_METHOD = """```python
class Solution:
    def twice(self, x):
        return 2 * x
```
Test:
```python
print(Solution().twice(2))
```
"""


def test_the_block_that_defines_the_entry_point_is_taken():
    assert extract_code(FUNCTION_THEN_EXAMPLE, "add") == "def add(a, b):\n    return a + b\n"
    assert extract_code(FUNCTION_THEN_EXAMPLE) == "print(add(2, 3))  # 5\n"  # no entry point: the last block
    assert extract_code(PROSE_BETWEEN, "add").startswith("def add(a, b):")
    assert extract_code(TWO_DEFINITIONS, "add") == "def add(a, b):\n    return a + b\n"  # the last definition
    assert "class Solution" in extract_code(SOLUTION_METHOD, "twice")
    # no block defines it: the last block, as before
    assert extract_code(FUNCTION_THEN_EXAMPLE, "subtract") == "print(add(2, 3))  # 5\n"


def test_unfenced_answers_give_their_top_level_definitions():
    code = extract_code(NO_FENCE, "add")
    assert code == "import math\n\ndef add(a, b):\n    # adds two numbers\n    return a + b\n"
    compile(code, "<answer>", "exec")
    assert extract_code(NO_FENCE, "other") is None  # definitions of something else: no code found
    assert extract_code(NO_FENCE) is None  # no entry point and no fence: as before


def test_real_shaped_answers_are_graded_on_the_function():
    answers = [FUNCTION_THEN_EXAMPLE, PROSE_BETWEEN, NO_FENCE, TWO_DEFINITIONS]
    assert grade_batch(answers, [ADD] * 4, workers=1) == [True] * 4
    assert grade_batch([SOLUTION_METHOD], [CALL], workers=1) == [True]
    # raw and a callable extractor are unchanged: the whole response / what the callable returns
    assert extract_program(FUNCTION_THEN_EXAMPLE, ADD, "raw") == FUNCTION_THEN_EXAMPLE
    assert extract_program(FUNCTION_THEN_EXAMPLE, ADD, lambda r: "def add(a, b):\n    return 0\n") == \
        "def add(a, b):\n    return 0\n"
    assert grade_batch([FUNCTION_THEN_EXAMPLE], [ADD], extract=lambda r: "def add(a, b):\n    return 0\n",
                       workers=1) == [False]


def test_an_answer_without_code_is_wrong_with_no_code_found_never_a_crash():
    problem = Problem(id="p/add", question="def add(a, b):", answer=ADD.to_json(), source="humaneval")
    answers = ["I am not sure how to do this.", "", "```python\n\n```", "```text\nadd\n```"]
    assert grade("code", answers, [problem] * 4, code=CodeGrading(workers=1)) == [False] * 4
    assert code_reports(answers, [problem] * 4, code=CodeGrading(workers=1)) == [(None, None)] * 4
    from scope_lib.smol import HumanEvalSlice
    import numpy as np

    found = HumanEvalSlice([problem.id], 1, [[answers[0]]], np.zeros((1, 1), bool), [[(None, None)]])
    assert "no code found" in found.details()[0]
    with pytest.raises(ValueError, match="response: expected str"):
        extract_code(None, "add")
