"""Programs per second through the execution sandbox (scope_lib.sandbox), on a few cores.

    python bench/sandbox_throughput.py [--workers 2] [--programs 200] [--timeouts 20] [--out FILE]

Three batches, each spread over `--workers` threads (one sandbox process tree per program, so
threads are real parallelism):

1. trivial programs, `run("print(sum(range(10)))")`;
2. trivial programs judged: a correct a+b program against one stdin/stdout case (the path a
   code reward takes: supervisor, runner, one test fork);
3. programs that time out: `while True: pass` with a 1 s timeout.

Prints programs/second and the median wall time of one program, and writes them as Markdown.
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
    parser.add_argument("--out", default=None, help="also write the table to this Markdown file")
    args = parser.parse_args()

    from scope_lib import sandbox

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

    rows = [
        ("trivial program, run()", args.programs) + _batch(trivial, args.programs, args.workers),
        ("trivial program judged (1 stdin/stdout case)", args.programs) + _batch(judged, args.programs, args.workers),
        ("program timing out (timeout 1 s)", args.timeouts) + _batch(timing_out, args.timeouts, args.workers),
    ]
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [f"Sandbox throughput, {args.workers} worker threads, {os.cpu_count()} CPUs ({cpu}), "
             f"Python {platform.python_version()}, {'root' if os.geteuid() == 0 else 'not root'}.", "",
             "| batch | programs | programs / s | median s / program |", "|---|---|---|---|"]
    lines += [f"| {name} | {count} | {rate:.1f} | {median:.3f} |" for name, count, rate, median in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
