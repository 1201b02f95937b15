"""Answer checking: extraction, exact fast path, math-verify equivalences, hard timeouts."""

from __future__ import annotations

import multiprocessing as mp
import random
import threading
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scope_lib.verify import (
    clear_cache,
    extract_boxed,
    extract_last_number,
    fast_path_equal,
    grade_batch,
    is_correct,
)

# ---------------------------------------------------------------------------------------------
# extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so \boxed{5}", "5"),
        (r"first \boxed{1} then \boxed{2}", "2"),  # the last box counts
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces are not groups
        (r"\boxed{a_{b_{c}}} tail", "a_{b_{c}}"),
        (r"\fbox{7}", "7"),
        (r"\boxed{3} and finally \fbox{4}", "4"),
        (r"\boxed {6}", "6"),
        (r"$\boxed 5$", "5"),
        (r"\boxed{\boxed{8}}", "8"),  # a box of a box is unwrapped
        (r"\boxed{}", ""),
        ("no answer here", None),
        (r"\boxed{1} then \boxed{2", None),  # last box unbalanced (truncated)
        (r"\boxedx{3}", None),  # a different macro
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@given(st.text(alphabet="ab+-1{}\\ ", max_size=30))
@settings(max_examples=200, deadline=None)
def test_extract_boxed_roundtrips_balanced_content(inner):
    """Any brace-balanced content put in a box comes back unchanged."""
    depth, i, balanced = 0, 0, True
    while i < len(inner):
        if inner[i] == "\\":
            i += 2
            continue
        depth += {"{": 1, "}": -1}.get(inner[i], 0)
        balanced &= depth >= 0
        i += 1
    if not balanced or depth != 0 or inner.endswith("\\") or "boxed" in inner:
        return
    assert extract_boxed("text " + "\\boxed{" + inner + "} more") == inner


@pytest.mark.parametrize(
    "text, expected",
    [
        ("She pays 3 + 15 = 18 dollars.\n#### 18", "18"),
        ("#### 1,000", "1,000"),
        ("The answer is -7.5.", "-7.5"),
        ("We get 3 apples and 4 pears, total 7.", "7"),
        ("answer: 3/4", "3/4"),
        ("no digits", None),
    ],
)
def test_extract_last_number(text, expected):
    assert extract_last_number(text) == expected


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="extract"):
        is_correct(r"\boxed{1}", "1", extract="first_word")
    with pytest.raises(ValueError, match="timeout"):
        is_correct(r"\boxed{1}", "1", timeout=0)
    with pytest.raises(ValueError, match="golds"):
        grade_batch([r"\boxed{1}"], ["1", "2"])
    with pytest.raises(ValueError, match="gold"):
        is_correct(r"\boxed{1}", ["1"])


# ---------------------------------------------------------------------------------------------
# fast path


def _decimal_text(value: Fraction, places: int) -> str:
    """Exact decimal text of `value` (a multiple of 10**-places), by integer arithmetic."""
    scaled = int(value * 10**places)
    sign, digits = ("-" if scaled < 0 else ""), str(abs(scaled)).rjust(places + 1, "0")
    return sign + (digits[:-places] + "." + digits[-places:] if places else digits)


@given(st.integers(-(10**30), 10**30), st.integers(0, 6))
@settings(max_examples=200, deadline=None)
def test_fast_path_integers_and_decimals_exact(scaled, places):
    """A decimal equals itself with trailing zeros and differs from itself plus one unit in
    its last place (no float rounding at any magnitude)."""
    value = Fraction(scaled, 10**places)
    text = _decimal_text(value, places)
    assert Fraction(text) == value
    assert fast_path_equal(text, text + ("0" if places else ".0")) is True
    assert fast_path_equal(text, _decimal_text(value + Fraction(1, 10**places), places)) is False
    assert is_correct("\\boxed{" + text + "}", text) is True


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("27", "27.0", True),
        ("1,000", "1000", True),
        ("1\\,000", "1000", True),
        ("$18$", "18", True),
        ("\\$18", "18", True),
        ("18.", "18", True),
        ("-0.5", "-.5", True),
        ("0.3333333", "0.333333", False),  # exact, unlike math-verify's 6-place rounding
        ("10", "1", False),
        ("1,2", "12", None),  # not a thousands grouping: a tuple, left to math-verify
        ("\\frac12", "0.5", None),
    ],
)
def test_fast_path_cases(answer, gold, expected):
    assert fast_path_equal(answer, gold) is expected


def test_fast_path_huge_number_is_fast():
    digits = "".join(random.Random(0).choice("0123456789") for _ in range(10_000))
    start = time.perf_counter()
    assert is_correct("\\boxed{1" + digits + "}", "1" + digits)
    assert not is_correct("\\boxed{1" + digits + "}", "2" + digits)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------------------------
# math-verify path


@pytest.mark.parametrize(
    "response, gold, expected",
    [
        (r"\boxed{\frac{1}{2}}", "0.5", True),
        (r"\boxed{1/2}", r"\frac{1}{2}", True),
        (r"\boxed{\dfrac{3}{4}}", "0.75", True),
        (r"\boxed{\frac{1}{3}}", "0.5", False),
        (r"\boxed{-\frac{3}{2}}", "-1.5", True),
        (r"\boxed{-3}", "3", False),
        (r"\boxed{(x+1)^2}", "x^2+2x+1", True),
        (r"\boxed{(x+1)^2}", "x^2+1", False),
        (r"\boxed{\sqrt{2}/2}", r"\frac{\sqrt{2}}{2}", True),
        (r"\boxed{[1, 2)}", "[1,2)", True),
        (r"\boxed{(1, 2]}", "[1,2)", False),
        (r"\boxed{(1, 2, 3)}", "(1,2,3)", True),
        (r"\boxed{(1, 3, 2)}", "(1,2,3)", False),
        (r"\boxed{x = 3}", "3", True),
        (r"\boxed{\infty}", r"\infty", True),
        (r"\boxed{\text{(B)}}", "B", True),
        ("$\\boxed{2}$ then corrected: $\\boxed{\\frac{4}{3}}$", r"\frac{4}{3}", True),
        ("$\\boxed{\\frac{4}{3}}$ then corrected: $\\boxed{2}$", r"\frac{4}{3}", False),
        (r"\boxed{\frac{1}{2}}", r"$\frac{1}{2}$", True),  # gold in $...$
        (r"\boxed{\frac{1}{2}}", r"\boxed{0.5}", True),  # gold boxed
        (r"\boxed{18 \text{ dollars}}", "18", True),  # units and symbols dropped
        (r"\boxed{30^\circ}", "30", True),
        (r"\boxed{50\%}", "50", True),
        (r"\boxed{1.6 \mathrm{~cm}}", "1.6", True),
        (r"\boxed{Evelyn}", r"\text{Evelyn}", True),
        (r"\boxed{(3, \pi/2)}", r"\left( 3, \frac{\pi}{2} \right)", True),
        (r"\boxed{(3, \pi)}", r"\left( 3, \frac{\pi}{2} \right)", False),
        (r"\boxed{4.67}", r"\frac{14}{3}", False),  # rounded is not equal
        (r"\boxed{\sqrt{8}}", r"2\sqrt{2}", True),
        (r"\boxed{4.5 \times 10^{33}}", "4.5e33", True),  # e-notation is not Euler's e
        (r"\boxed{\{1, 2\}}", r"\{2, 1\}", True),
        (r"no box, answer 5", "5", False),
        (r"\boxed{}", "5", False),
        (r"\boxed{5", "5", False),
    ],
)
def test_is_correct_cases(response, gold, expected):
    assert is_correct(response, gold) is expected


def test_last_number_extractor_grades_gsm8k_style():
    assert is_correct("... so 3 + 15 = 18\n#### 18", "18", extract="last_number")
    assert is_correct("The answer is 1,250.", "1250", extract="last_number")
    assert not is_correct("The answer is 17.", "18", extract="last_number")
    assert is_correct("so x = 3/4", r"\frac{3}{4}", extract="last_number")


@pytest.mark.parametrize(
    "response",
    [
        r"\boxed{10^{10^{10^{10}}}}",
        r"\boxed{9^{9^{9^9}}}",
        "\\boxed{" + "(" * 5000 + "}",
        "\\boxed{" + "1" * 10_000 + "+1}",
        "\\boxed{" + "{" * 3000 + "1" + "}" * 3000 + "}",
    ],
    ids=["tower10", "tower9", "parens5000", "digits1e4", "braces3000"],
)
def test_pathological_inputs_are_false_and_bounded(response):
    start = time.perf_counter()
    assert is_correct(response, "5", timeout=2.0) is False
    assert time.perf_counter() - start < 15.0
    # the worker was restarted if it had to be killed: grading still works
    assert is_correct(r"\boxed{\frac{2}{4}}", "1/2")


def test_grading_from_a_thread():
    results = {}

    def run(key, response, gold):
        results[key] = is_correct(response, gold, timeout=2.0)

    threads = [
        threading.Thread(target=run, args=("half", r"\boxed{\frac{2}{4}}", "0.5")),
        threading.Thread(target=run, args=("wrong", r"\boxed{\frac{1}{4}}", "0.5")),
        threading.Thread(target=run, args=("tower", r"\boxed{9^{9^{9^9}}}", "1")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {"half": True, "wrong": False, "tower": False}


def _grade_in_worker(args):
    return is_correct(*args, timeout=2.0)


@pytest.mark.parametrize("context", ["spawn", "fork"])
def test_grading_from_a_multiprocessing_worker(context):
    jobs = [(r"\boxed{\frac{2}{4}}", "1/2"), (r"\boxed{10^{10^{10^{10}}}}", "1"), (r"\boxed{3}", "3")]
    with mp.get_context(context).Pool(1) as pool:  # pool workers are daemonic
        assert pool.map(_grade_in_worker, jobs) == [True, False, True]


def test_a_worker_that_died_is_replaced():
    from scope_lib import verify_worker

    clear_cache()  # graded by a worker, not read from an earlier test's cached verdict
    assert is_correct(r"\boxed{\frac{3}{6}}", "1/2", timeout=60)  # leaves an idle, live worker
    live = [worker for worker in verify_worker._POOL.idle if worker.proc is not None]  # one killed after a timeout has none
    assert live
    for worker in live:
        worker.proc.kill()
        worker.proc.wait()
    clear_cache()
    assert is_correct(r"\boxed{\frac{3}{6}}", "1/2")  # a dead worker is noticed and restarted
    assert is_correct(r"\boxed{\frac{3}{6}}", "1/2")


def test_grade_batch_matches_is_correct():
    rng = random.Random(1)
    base = [
        (r"\boxed{\frac{1}{2}}", "0.5"), (r"\boxed{0.25}", r"\frac{1}{4}"), (r"\boxed{7}", "7"),
        (r"\boxed{7}", "8"), (r"\boxed{(x+1)^2}", "x^2+2x+1"), (r"\boxed{x^2}", "x^3"),
        ("no answer", "1"), (r"\boxed{[0, 1]}", "[0,1]"), (r"\boxed{9^{9^{9^9}}}", "2"),
        (r"\boxed{-12}", "-12.0"),
    ]
    pairs = [rng.choice(base) for _ in range(40)]
    responses, golds = [p[0] for p in pairs], [p[1] for p in pairs]
    clear_cache()
    batch = grade_batch(responses, golds, timeout=2.0, processes=2)
    clear_cache()
    assert batch == [is_correct(r, g, timeout=2.0) for r, g in pairs]
    assert grade_batch([], []) == []


def test_repeated_pathological_answer_costs_one_timeout():
    clear_cache()
    start = time.perf_counter()
    tower = r"\boxed{10^{10^{10^{10}}}}"
    assert grade_batch([tower] * 8, ["3"] * 8, timeout=1.0, processes=2) == [False] * 8
    assert is_correct(tower, "3", timeout=1.0) is False  # remembered, no second timeout
    assert time.perf_counter() - start < 1.0 + 10.0  # one timeout plus worker start-up
