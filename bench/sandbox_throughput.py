"""Programs per second through the execution sandbox (scope_lib.grading.sandbox), on a few cores.

    python bench/sandbox_throughput.py [--workers 2] [--programs 200] [--timeouts 20] [--batch-size 32] [--out FILE]

Batches, each spread over `--workers` threads (one sandbox process tree per program, so
threads are real parallelism):

1. trivial programs, `run("print(sum(range(10)))")`;
2. trivial programs judged: a correct a+b program against one stdin/stdout case (the path a
   code reward takes: supervisor, runner, one test fork), with `judge()` (one sandbox per
   program) and with `judge_many()` (one sandbox per `--batch-size` programs; each worker
   thread judges its own share of the list);
3. programs that time out: `while True: pass` with a 1 s timeout, with `run()`, `judge()` and
   `judge_many()`.

Prints programs/second, the median wall time of one call, and the judge_many/judge ratio, and
writes them as Markdown.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from scope_lib.common.machine import cpu_model  # noqa: E402


def _batch(fn, count: int, workers: int) -> tuple[float, float]:
    """(programs per second, median seconds per program) of `count` calls of `fn` on `workers` threads."""
    durations: list[float] = []

    def one(_):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - start), statistics.median(durations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--programs", type=int, default=200, help="trivial programs per batch")
    parser.add_argument("--timeouts", type=int, default=20, help="programs that time out")
    parser.add_argument("--batch-size", type=int, default=32, help="judge_many's batch_size")
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()

    from scope_lib.grading import sandbox

    sandbox.check_isolation()
    sandbox.run("pass", timeout=10)  # warm: the interpreter probe runs once per process

    def trivial():
        result = sandbox.run("print(sum(range(10)))", timeout=10)
        assert result.stdout == "45\n", result

    add = {"kind": "stdio", "cases": [["1 2\n", "3\n"]]}

    def judged():
        report = sandbox.judge("a, b = map(int, input().split())\nprint(a + b)\n", add, timeout=10)
        assert report.correct, report

    def timing_out():
        result = sandbox.run("while True:\n    pass\n", timeout=1)
        assert result.timed_out, result

    loop = "while True:\n    pass\n"

    def judged_timing_out():
        report = sandbox.judge(loop, add, timeout=1)
        assert report.status == "timeout", report

    def many(source: str, count: int, expect: str):
        """judge_many over `count` programs, the list split between the worker threads: (programs/s, median s per call)."""
        shares = [count // args.workers + (1 if i < count % args.workers else 0) for i in range(args.workers)]

        def share_of(size: int):
            def go():
                reports = sandbox.judge_many([source] * size, add, timeout=1 if expect == "timeout" else 10,
                                             batch_size=args.batch_size)
                assert all(r.status == expect for r in reports), reports
            return go

        durations = []
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.workers) as pool:
            def timed(size):
                begin = time.perf_counter()
                share_of(size)()
                durations.append((time.perf_counter() - begin) / max(size, 1))
            list(pool.map(timed, shares))
        return count / (time.perf_counter() - start), statistics.median(durations)

    judged_rate = _batch(judged, args.programs, args.workers)
    many_rate = many("a, b = map(int, input().split())\nprint(a + b)\n", args.programs, "passed")
    judged_loop = _batch(judged_timing_out, args.timeouts, args.workers)
    many_loop = many(loop, args.timeouts, "timeout")
    rows = [
        ("trivial program, run()", args.programs) + _batch(trivial, args.programs, args.workers),
        ("trivial program judged (1 stdin/stdout case), judge()", args.programs) + judged_rate,
        (f"trivial program judged, judge_many(batch_size={args.batch_size})", args.programs) + many_rate,
        ("program timing out (timeout 1 s), run()", args.timeouts) + _batch(timing_out, args.timeouts, args.workers),
        ("program timing out judged (timeout 1 s), judge()", args.timeouts) + judged_loop,
        (f"program timing out judged, judge_many(batch_size={args.batch_size})", args.timeouts) + many_loop,
    ]
    cpu = cpu_model()
    lines = [f"Sandbox throughput, {args.workers} worker threads, {os.cpu_count()} CPUs ({cpu}), "
             f"Python {platform.python_version()}, {'root' if os.geteuid() == 0 else 'not root'}.", "",
             "| batch | programs | programs / s | median s / program |", "|---|---|---|---|"]
    lines += [f"| {name} | {count} | {rate:.1f} | {median:.3f} |" for name, count, rate, median in rows]
    lines += ["", f"judge_many / judge, programs per second: trivial {many_rate[0] / judged_rate[0]:.1f}x, "
              f"timing out {many_loop[0] / judged_loop[0]:.2f}x. (median s / program, for judge_many: one thread's "
              "judge_many call divided by its number of programs.)"]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
