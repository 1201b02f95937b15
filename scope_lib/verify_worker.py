"""Hard timeouts for math-verify: persistent subprocess workers, one request at a time each.

math-verify's own timeout uses `signal.alarm`, which only works in the main thread of the main
process, so `scope_lib.verify` switches it off (`parsing_timeout=None`, `timeout_seconds=None`)
and grades here instead. Each worker is `python verify_worker.py --worker`, a plain subprocess
speaking JSON lines on stdin/stdout; the caller waits on the pipe with a timeout, and a worker
that overruns is killed (SIGKILL, so C-level loops die too) and restarted lazily. Plain
subprocesses rather than multiprocessing children keep this working from threads and from
inside daemonic multiprocessing pool workers, which may not have children of their own. A
worker also caps its address space (SCOPE_VERIFY_MEMORY_MB, default 4096) so an answer such as
`9^{9^{9^9}}` fails with MemoryError instead of swapping the machine.

Verdicts are remembered per (answer, gold) pair (`clear_cache()` forgets them): a group of G
rollouts often repeats an answer, and a pathological one would otherwise cost G timeouts.
Set SCOPE_VERIFY_DEBUG=1 to see the workers' stderr.

A worker dies with the process that started it, even mid-grade and even when that process is
SIGKILLed (`die_with_parent`: Linux's parent-death signal; elsewhere a worker only notices
its parent is gone when it next reads its stdin). The project's other child processes (the
run grid's pool workers) use the same function.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections import OrderedDict
from typing import Sequence
import ctypes
import logging
import warnings

__all__ = ["grade_pairs", "clear_cache", "die_with_parent"]


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PARENT_PID_ENV = "SCOPE_VERIFY_PARENT_PID"  # the worker's parent, for die_with_parent's race check


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Have the kernel SIGKILL this process when its parent dies; returns whether it could.

    Linux only (prctl PR_SET_PDEATHSIG through ctypes); elsewhere it returns False and does
    nothing. `parent_pid` is the process that started this one: when it died before the
    request was made (this process was already handed to init), this process ends now.
    Caveat: the signal comes when the *thread* that started this process exits, so a parent
    must start such children from a thread that lives as long as it does (see `_Spawner`).
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    unsigned = ctypes.c_ulong  # prctl is variadic: pass the kernel's unsigned longs at full width
    if libc.prctl(_PR_SET_PDEATHSIG, unsigned(signal.SIGKILL), unsigned(0), unsigned(0), unsigned(0)) != 0:
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)  # the parent is already gone: the signal would never come
    return True


class _Spawner:
    """Starts worker processes from one thread that lives as long as this process.

    A child's parent-death signal fires when the thread that forked it exits, and grade_pairs
    starts workers from short-lived lane threads, which would take their workers with them.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner = -1  # pid whose thread serves `requests` (a forked child starts its own)
        self.requests: queue.Queue = queue.Queue()

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        with self.lock:
            if self.owner != os.getpid():
                self.owner, self.requests = os.getpid(), queue.Queue()
                threading.Thread(target=self._serve, args=(self.requests,), daemon=True, name="verify-spawner").start()
            requests = self.requests
        reply: queue.Queue = queue.Queue(maxsize=1)
        requests.put((argv, kwargs, reply))
        started, value = reply.get()
        if not started:
            raise value
        return value

    @staticmethod
    def _serve(requests: queue.Queue) -> None:
        while True:
            argv, kwargs, reply = requests.get()
            try:
                reply.put((True, subprocess.Popen(argv, **kwargs)))
            except BaseException as error:  # re-raised in the caller's thread
                reply.put((False, error))


_SPAWNER = _Spawner()


_STARTUP_TIMEOUT = 120.0  # importing sympy on a busy 2-core machine; not charged to an item
_MAX_IDLE_WORKERS = max(2, os.cpu_count() or 1)
_MEMORY_LIMIT_MB = int(os.environ.get("SCOPE_VERIFY_MEMORY_MB", "4096"))  # 0: no limit


class _Worker:
    """One `python verify_worker.py --worker` child speaking JSON lines on stdin/stdout."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue = queue.Queue()
        self.next_id = 0

    def _start(self) -> None:
        env = dict(os.environ, SCOPE_VERIFY_MEMORY_MB=str(_MEMORY_LIMIT_MB), **{_PARENT_PID_ENV: str(os.getpid())})
        debug = os.environ.get("SCOPE_VERIFY_DEBUG")
        self.proc = _SPAWNER.popen(
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
    # Locks another thread held at the fork would stay held forever in the child: renew them.
    global _POOL
    _POOL = _WorkerPool()
    _CACHE.lock = threading.Lock()
    _SPAWNER.lock = threading.Lock()  # its thread did not survive the fork: popen starts a new one


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool_in_child)

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


def grade_pairs(pairs: Sequence[tuple[str, str]], timeout: float, processes: int | None = None) -> list[bool]:
    """math-verify verdicts for `(answer, gold)` pairs of bare LaTeX (no box), each distinct pair
    graded once, spread over up to `processes` workers (default: CPU count). A pair whose
    grading overruns `timeout` seconds is False."""
    results: list[bool | None] = [None] * len(pairs)
    rows: dict[tuple[str, str], list[int]] = {}
    for i, pair in enumerate(pairs):
        results[i] = _CACHE.get(pair, timeout)
        if results[i] is None:
            rows.setdefault(pair, []).append(i)
    todo: queue.Queue = queue.Queue()
    for pair in rows:
        todo.put(pair)
    errors: list[BaseException] = []

    def lane() -> None:
        worker = _POOL.acquire()
        try:
            while True:
                try:
                    pair = todo.get_nowait()
                except queue.Empty:
                    return
                verdict = worker.grade(*pair, timeout)
                _CACHE.put(pair, verdict, timeout)
                for i in rows[pair]:
                    results[i] = bool(verdict)
        except BaseException as e:  # re-raised in the caller's thread below
            errors.append(e)
        finally:
            _POOL.release(worker)

    lanes = min(processes or os.cpu_count() or 1, len(rows))
    if lanes == 1:
        lane()  # one pair (is_correct) or one lane: no thread needed
    elif lanes > 1:
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
    # First, before seconds of imports: a grade can spin in C for minutes, and an orphan would
    # spin on after its parent was killed.
    die_with_parent(int(os.environ[_PARENT_PID_ENV]) if os.environ.get(_PARENT_PID_ENV) else None)

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
