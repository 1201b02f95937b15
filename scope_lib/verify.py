"""Answer checking: is a model's final answer mathematically equal to the gold answer?

The verifier gives the binary reward `r_i` that routes rollouts into Omega_c / Omega_w (DESIGN
section 2), so it has to be right, fast and impossible to hang:

- extraction: the final answer is the content of the last `\\boxed{...}` (or `\\fbox{}`) of the
  response, nested braces handled (`extract="boxed"`); plain-text models use
  `extract="last_number"` (GSM8K's `#### 18`, "The answer is 18", else the last number).
- fast path: when both answers are plain integers or decimals they are compared exactly as
  numbers in the calling process (the tiny world grades thousands of these per step).
  Departure from math-verify: it rounds floats to 6 places (0.3333333 == 0.333333), the fast
  path does not.
- everything else goes to math-verify (`parse` + `verify`, LaTeX extraction of the boxed
  answer) in persistent subprocess workers with a hard per-item timeout
  (`scope_lib.verify_worker`), so grading never hangs, works from threads and from inside
  multiprocessing workers, and logs nothing.

Usage:
    is_correct("... so the answer is \\boxed{\\frac{1}{2}}.", "0.5")  # True
    grade_batch(responses, golds, timeout=5.0, processes=2)         # list[bool]
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Callable, Sequence

from scope_lib.verify_worker import clear_cache, grade_pairs

__all__ = [
    "extract_boxed",
    "extract_last_number",
    "EXTRACTORS",
    "is_correct",
    "grade_batch",
    "fast_path_equal",
    "clear_cache",
]

# ---------------------------------------------------------------------------------------------
# extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")


def _match_braces(text: str, open_pos: int) -> int | None:
    """Index just past the `}` closing the `{` at `open_pos`, or None when unbalanced.

    Escaped braces (`\\{`, `\\}`) are LaTeX literals, not groups, so a backslash skips the next
    character (which also consumes `\\\\` line breaks as a pair).
    """
    depth, i, n = 0, open_pos, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _sole_box(text: str) -> str | None:
    """Content of `text` when it is exactly one braced box, else None."""
    text = text.strip()
    m = _BOX_RE.match(text)
    if m is None:
        return None
    i = m.end()
    while i < len(text) and text[i] == " ":
        i += 1
    if i < len(text) and text[i] == "{" and _match_braces(text, i) == len(text):
        return text[i + 1 : -1]
    return None


def extract_boxed(text: str) -> str | None:
    """Content of the last top-level `\\boxed{...}` / `\\fbox{...}` in `text`.

    Boxes nested inside a box are part of its content (`\\boxed{\\boxed{5}}` gives `5`, the outer
    box is unwrapped while its whole content is one box). `\\boxed 5` (no braces) gives the next
    token. Returns None when there is no box or the last one is unbalanced (a truncated
    generation has no final answer).
    """
    if not isinstance(text, str):
        raise ValueError(f"text: expected str, got {type(text).__name__}")
    result: str | None = None
    pos = 0
    while (m := _BOX_RE.search(text, pos)) is not None:
        i = m.end()
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            end = _match_braces(text, i)
            if end is None:
                return None  # unbalanced: it runs to the end, so it is the last box
            result = text[i + 1 : end - 1]
            pos = end
        elif i > m.end():  # `\boxed 5`: one token, up to whitespace or `$`
            tok = re.match(r"[^\s$]+", text[i:])
            result = tok.group(0) if tok else None
            pos = i + (tok.end() if tok else 0)
        else:
            pos = m.end()
    # A box whose whole content is another box (`\boxed{\boxed{5}}`) is unwrapped.
    while result is not None and (inner := _sole_box(result)) is not None:
        result = inner
    return result


_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?"
_HASH_RE = re.compile(r"####\s*(" + _NUMBER + ")")
_ANSWER_IS_RE = re.compile(r"answer\s*(?:is|:)\s*\$?\s*(" + _NUMBER + ")", re.IGNORECASE)
_ANY_NUMBER_RE = re.compile(r"(?<![\w.])" + _NUMBER)


def extract_last_number(text: str) -> str | None:
    """Final answer of a plain-text solution: after the last `####`, else after the last
    "answer is"/"answer:", else the last number in the text (commas, sign, decimals and
    `a/b` kept). None when the text has no number."""
    if not isinstance(text, str):
        raise ValueError(f"text: expected str, got {type(text).__name__}")
    for pattern in (_HASH_RE, _ANSWER_IS_RE):
        found = pattern.findall(text)
        if found:
            return found[-1]
    numbers = _ANY_NUMBER_RE.findall(text)
    if numbers:
        return numbers[-1]
    return None


# Registry name -> extractor (open-r1 style); `is_correct(..., extract=name)` picks one.
EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "boxed": extract_boxed,
    "last_number": extract_last_number,
}


def _extractor(extract: str | Callable[[str], str | None]) -> Callable[[str], str | None]:
    if callable(extract):
        return extract
    if extract not in EXTRACTORS:
        raise ValueError(f"extract: expected one of {sorted(EXTRACTORS)} or a callable, got {extract!r}")
    return EXTRACTORS[extract]


# What a missing value becomes when written as text (Python's None, pandas' NaN, JSON's null):
# never a gold answer, or `\boxed{None}` would be graded correct.
NULL_ANSWERS = frozenset({"none", "nan", "null"})


def is_null_answer(text: str) -> bool:
    """True for the text of a missing value ("None", "nan", "null", any case, `$`/space around)."""
    return text.strip().strip("$").strip().lower() in NULL_ANSWERS


def _clean_gold(gold: str) -> str:
    """Gold answers come as plain strings, `$...$` or a boxed expression: reduce to content.

    ValueError for a null placeholder ("None", "nan", "null"): a missing gold answer is not an answer."""
    if not isinstance(gold, str):
        raise ValueError(f"gold: expected str, got {type(gold).__name__} (join lists first)")
    boxed = extract_boxed(gold)
    text = boxed if boxed is not None else gold
    text = re.sub(r"\$\s*,\s*\$", ", ", text)  # "$(3,2)$, $(-3,2)$": the inner "$, $" is a comma
    text = text.strip().strip("$").strip()
    if text.lower() in NULL_ANSWERS:
        raise ValueError(f"gold: {gold!r} is the text of a missing value, not an answer")
    return text


# ---------------------------------------------------------------------------------------------
# fast path: plain integers and decimals, compared exactly

_PLAIN_RE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_THOUSANDS_RE = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")


def _plain_number(text: str) -> Decimal | None:
    s = text.replace(" ", "").replace("\\$", "").replace("$", "").replace("\\!", "")
    s = s.replace("\\,", "").replace("{,}", ",").rstrip(".")  # LaTeX thousands: 1\,000, 1{,}000
    if _THOUSANDS_RE.fullmatch(s):
        s = s.replace(",", "")
    if not _PLAIN_RE.fullmatch(s):
        return None
    try:
        return Decimal(s)  # exact; no int-str digit limit, unlike int()/Fraction()
    except InvalidOperation:
        return None


def fast_path_equal(answer: str, gold: str) -> bool | None:
    """Exact comparison when both are plain numbers; None when the fast path does not apply."""
    a, g = _plain_number(answer), _plain_number(gold)
    if a is None or g is None:
        return None
    return a == g


# ---------------------------------------------------------------------------------------------
# public API


def _prepare(response: str, gold: str, extract) -> tuple[str | None, str, bool | None]:
    if not isinstance(response, str):
        raise ValueError(f"response: expected str, got {type(response).__name__}")
    answer = _extractor(extract)(response)
    gold_text = _clean_gold(gold)
    if answer is None or not answer.strip() or not gold_text:
        return None, gold_text, False
    return answer, gold_text, fast_path_equal(answer, gold_text)


def _check_timeout(timeout: float) -> None:
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ValueError(f"timeout: expected a positive number of seconds, got {timeout!r}")


def is_correct(response: str, gold: str, *, timeout: float = 5.0, extract="boxed") -> bool:
    """True iff the final answer of `response` is mathematically equal to `gold`.

    `extract`: "boxed" (last `\\boxed{}`), "last_number", or a callable text -> str | None.
    False when there is no answer, and False (never a hang) when grading takes longer than
    `timeout` seconds of the worker's time.
    """
    _check_timeout(timeout)
    answer, gold_text, decided = _prepare(response, gold, extract)
    if decided is not None:
        return decided
    return grade_pairs([(answer, gold_text)], timeout)[0]


def grade_batch(responses: Sequence[str], golds: Sequence[str], *, timeout: float = 5.0,
                processes: int | None = None, extract="boxed") -> list[bool]:
    """`[is_correct(r, g) for r, g in zip(responses, golds)]`, with the math-verify rows spread
    over `processes` workers (default: CPU count, capped at the number of such rows)."""
    _check_timeout(timeout)
    if len(responses) != len(golds):
        raise ValueError(f"golds: expected {len(responses)} items like responses, got {len(golds)}")
    if processes is not None and processes < 1:
        raise ValueError(f"processes: expected a positive int or None, got {processes!r}")
    results: list[bool | None] = []
    slow_rows: list[int] = []
    slow_pairs: list[tuple[str, str]] = []
    for i, (response, gold) in enumerate(zip(responses, golds)):
        answer, gold_text, decided = _prepare(response, gold, extract)
        results.append(decided)
        if decided is None:
            slow_rows.append(i)
            slow_pairs.append((answer, gold_text))
    for i, verdict in zip(slow_rows, grade_pairs(slow_pairs, timeout, processes)):
        results[i] = verdict
    return [bool(r) for r in results]
