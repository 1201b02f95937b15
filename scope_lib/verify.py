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
- everything else goes to math-verify (`parse` + `verify`) in a persistent child process.
  math-verify's own timeout uses `signal.alarm`, which only works in the main thread of the
  main process, so it is switched off (`parsing_timeout=None`, `timeout_seconds=None`) and the
  hard timeout is enforced here instead: the caller waits on a pipe, and a worker that overruns
  is killed and restarted lazily. The workers are plain subprocesses (not multiprocessing
  children), so grading also works from threads and from inside daemonic multiprocessing pool
  workers, which may not have children of their own.

Usage:
    is_correct("... so the answer is \\boxed{\\frac{1}{2}}.", "0.5")  # True
    grade_batch(responses, golds, timeout=5.0, processes=2)         # list[bool]
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections import OrderedDict
from decimal import Decimal, InvalidOperation
from typing import Callable, Sequence

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


def _clean_gold(gold: str) -> str:
    """Gold answers come as plain strings, `$...$` or a boxed expression: reduce to content."""
    if not isinstance(gold, str):
        raise ValueError(f"gold: expected str, got {type(gold).__name__} (join lists first)")
    boxed = extract_boxed(gold)
    text = boxed if boxed is not None else gold
    return text.strip().strip("$").strip()


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
# math-verify path, in persistent subprocess workers with a hard timeout

_STARTUP_TIMEOUT = 120.0  # importing sympy on a busy 2-core machine; not charged to an item
_MAX_IDLE_WORKERS = max(2, os.cpu_count() or 1)
_MEMORY_LIMIT_MB = int(os.environ.get("SCOPE_VERIFY_MEMORY_MB", "4096"))  # 0: no limit


class _Worker:
    """One `python verify.py` child speaking JSON lines on stdin/stdout."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.next_id = 0

    def _start(self) -> None:
        env = dict(os.environ, SCOPE_VERIFY_MEMORY_MB=str(_MEMORY_LIMIT_MB))
        debug = os.environ.get("SCOPE_VERIFY_DEBUG")
        self.proc = subprocess.Popen(
            [sys.executable, "-u", os.path.abspath(__file__), "--worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=None if debug else subprocess.DEVNULL,
            env=env, text=True, encoding="utf-8", bufsize=1,
        )
        self.lines = queue.Queue()
        # A reader thread turns the blocking pipe into a queue we can wait on with a timeout.
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        ready = self._get(_STARTUP_TIMEOUT)
        if ready != {"ready": True}:
            self.kill()
            raise RuntimeError("verify worker failed to start (set SCOPE_VERIFY_DEBUG=1 to see why)")

    @staticmethod
    def _read(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)  # EOF: the worker died

    def _get(self, timeout: float):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            return "timeout"
        return None if line is None else json.loads(line)

    def grade(self, pred: str, gold: str, timeout: float) -> bool | None:
        """math-verify's verdict, or None when the worker overran `timeout` or died."""
        if self.proc is None or self.proc.poll() is not None:
            self._start()
        self.next_id += 1
        try:
            self.proc.stdin.write(json.dumps({"id": self.next_id, "pred": pred, "gold": gold}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            self.kill()
            return None
        reply = self._get(timeout)
        if not isinstance(reply, dict) or reply.get("id") != self.next_id:
            self.kill()  # timed out, crashed or out of step: a fresh worker next time
            return None
        return bool(reply["ok"])

    def kill(self) -> None:
        if self.proc is not None:
            try:
                self.proc.kill()
                self.proc.wait(timeout=10)
            except Exception:  # already gone
                pass
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except Exception:
                    pass
        self.proc = None


class _WorkerPool:
    """Idle workers handed out one per concurrent caller (threads, grade_batch lanes)."""

    def __init__(self) -> None:
        self.idle: list[_Worker] = []
        self.lock = threading.Lock()

    def acquire(self) -> _Worker:
        with self.lock:
            return self.idle.pop() if self.idle else _Worker()

    def release(self, worker: _Worker) -> None:
        with self.lock:
            keep = len(self.idle) < _MAX_IDLE_WORKERS
            if keep:
                self.idle.append(worker)
        if not keep:  # a wide grade_batch must not leave its extra workers running forever
            worker.kill()

    def shutdown(self) -> None:
        with self.lock:
            workers, self.idle = self.idle, []
        for w in workers:
            w.kill()


_POOL = _WorkerPool()


def _reset_pool_in_child() -> None:
    # A forked child must not share the parent's pipes; it starts its own workers on demand.
    global _POOL
    _POOL = _WorkerPool()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool_in_child)

import atexit  # noqa: E402

atexit.register(lambda: _POOL.shutdown())


class _VerdictCache:
    """(answer, gold) -> verdict, or -> the timeout it overran, bounded LRU.

    A group of G rollouts often repeats an answer, and a pathological answer repeated G times
    would otherwise cost G timeouts. A timeout is remembered with its budget: it answers False
    for calls with at most that budget and is retried with a larger one.
    """

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self.data: OrderedDict[tuple[str, str], bool | float] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple[str, str], timeout: float) -> bool | None:
        with self.lock:
            hit = self.data.get(key)
            if hit is None:
                return None
            self.data.move_to_end(key)
        if isinstance(hit, bool):
            return hit
        return False if timeout <= hit else None

    def put(self, key: tuple[str, str], verdict: bool | None, timeout: float) -> None:
        with self.lock:
            self.data[key] = verdict if verdict is not None else float(timeout)
            self.data.move_to_end(key)
            while len(self.data) > self.size:
                self.data.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.data.clear()


_CACHE = _VerdictCache()


def _grade_with(worker: _Worker, answer: str, gold: str, timeout: float) -> bool:
    verdict = worker.grade(answer, gold, timeout)
    _CACHE.put((answer, gold), verdict, timeout)
    return bool(verdict)


def _slow_grade(answer: str, gold: str, timeout: float) -> bool:
    cached = _CACHE.get((answer, gold), timeout)
    if cached is not None:
        return cached
    worker = _POOL.acquire()
    try:
        return _grade_with(worker, answer, gold, timeout)
    finally:
        _POOL.release(worker)


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
    return _slow_grade(answer, gold_text, timeout)


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
    slow: dict[tuple[str, str], list[int]] = {}  # distinct (answer, gold) -> rows, graded once
    for i, (response, gold) in enumerate(zip(responses, golds)):
        answer, gold_text, decided = _prepare(response, gold, extract)
        if decided is None:
            decided = _CACHE.get((answer, gold_text), timeout)
        results.append(decided)
        if decided is None:
            slow.setdefault((answer, gold_text), []).append(i)
    if slow:
        todo: queue.Queue = queue.Queue()
        for key in slow:
            todo.put(key)
        lanes = min(processes or os.cpu_count() or 1, len(slow))
        errors: list[BaseException] = []

        def lane() -> None:
            worker = _POOL.acquire()
            try:
                while True:
                    try:
                        answer, gold_text = todo.get_nowait()
                    except queue.Empty:
                        return
                    verdict = _grade_with(worker, answer, gold_text, timeout)
                    for i in slow[(answer, gold_text)]:
                        results[i] = verdict
            except BaseException as e:  # surfaced in the caller below
                errors.append(e)
            finally:
                _POOL.release(worker)

        threads = [threading.Thread(target=lane, daemon=True) for _ in range(lanes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    return [bool(r) for r in results]


def clear_cache() -> None:
    """Forget remembered math-verify verdicts (for timing runs and tests)."""
    _CACHE.clear()


# ---------------------------------------------------------------------------------------------
# worker process


_SCI_RE = re.compile(r"(?<![\w.\\])(\d+(?:\.\d+)?)[eE]([-+]?\d+)(?![\w.])")


def _sci_to_latex(text: str) -> str:
    """4.5e33 -> 4.5\\times 10^{33}: latex2sympy reads `e` as Euler's number (4.5*e*33)."""
    return _SCI_RE.sub(r"\1\\times 10^{\2}", text)


def _worker_main() -> None:  # pragma: no cover - runs in the child
    import logging
    import warnings

    # Running this file as a script puts scope_lib/ on sys.path, where module names such as
    # `config` or `metrics` could shadow third-party ones; drop it before importing sympy.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    # The protocol owns the real stdout; stray prints from libraries go to stderr.
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    limit_mb = int(os.environ.get("SCOPE_VERIFY_MEMORY_MB", "0"))
    if limit_mb > 0:
        try:  # 9^{9^{9^9}} should fail with MemoryError, not swap the machine
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))
        except (ImportError, ValueError, OSError):
            pass
    warnings.filterwarnings("ignore")
    logging.disable(logging.CRITICAL)  # math-verify warns once about its disabled timeout
    sys.setrecursionlimit(10_000)
    from math_verify import LatexExtractionConfig, parse, verify

    # LaTeX extraction only: the content is always boxed here, and ExprExtractionConfig would
    # pick a stray number out of LaTeX that latex2sympy cannot read (it turns the Minerva gold
    # `\hbar \omega(v+1 / 2)-...` into 2, so `\boxed{2}` would be graded correct).
    config = [LatexExtractionConfig(boxed_match_priority=0)]
    proto.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        ok = False
        try:
            gold = parse("\\boxed{" + _sci_to_latex(request["gold"]) + "}", extraction_config=config, parsing_timeout=None)
            pred = parse("\\boxed{" + _sci_to_latex(request["pred"]) + "}", extraction_config=config, parsing_timeout=None)
            ok = bool(gold and pred and verify(gold, pred, timeout_seconds=None))
        except BaseException:  # RecursionError, MemoryError, sympy internals: not equal
            ok = False
        proto.write(json.dumps({"id": request["id"], "ok": ok}) + "\n")


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker_main()
