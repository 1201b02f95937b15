"""Progress bars of work done in worker processes, drawn by the process that started them.

A worker process started from a notebook kernel writes to the kernel's captured stderr; a
text tqdm bar there, the more so one placed with `position` (cursor-up escape codes), turns
into interleaved lines of raw escape codes in the notebook's output. So workers do not draw:

    bars = WorkerBars(context)                  # in the parent: one bar per worker process
    pool = ProcessPoolExecutor(..., mp_context=context, initializer=worker_initializer,
                               initargs=bars.initargs())
    futures = [pool.submit(...)]
    wait_drawing(futures, bars)                 # waits, redrawing the bars as workers report

and in the code the workers run, `bar(...)` stands for `tqdm(...)` (transformers' and the
Hugging Face hub's own bars are off in such workers): in a worker started that
way it sends its progress to the parent (one bar per worker, reused from one job to the next,
named by the job's `desc`); anywhere else it is `tqdm.auto.tqdm` itself. The parent draws with
`tqdm.auto`: widgets in a notebook (one clean line each), bars placed by `position` on a
terminal, below an overall bar at position 0.
"""

from __future__ import annotations

import os
import queue as queue_module
import sys
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any

_channel: Any = None  # the queue to the parent, in a worker started with worker_initializer


def worker_initializer(channel, start=None, *start_args) -> None:
    """Initializer of a worker process: its bars report to `channel` (a queue of the pool's
    multiprocessing context, from `WorkerBars.initargs`); with `start`, the worker then calls
    `start(*start_args)`, e.g. `scope_lib.verify_worker.die_with_parent` with the parent's pid
    so that it dies with its parent."""
    global _channel
    # transformers' and the hub's own bars ("Loading weights", "Writing model shards") would be
    # drawn by every worker on the shared stderr, one over the other: off in workers.
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()
    if start is not None:
        start(*start_args)
    if channel is not None:
        # Reports are best effort: a worker never waits at exit for the parent to read them
        # (a parent that stopped draining, e.g. while it shuts the pool down, would hang it).
        channel.cancel_join_thread()
    _channel = channel


def relaying() -> bool:
    """Whether this process is a worker whose bars the parent draws."""
    return _channel is not None


class _RelayBar:
    """The part of tqdm's interface the library uses (update, set_postfix, close, iteration),
    sending each change to the parent instead of drawing."""

    def __init__(self, iterable: Iterable | None, total: int | None, initial: int, desc: str):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.desc, self.postfix = total, initial, desc, ""
        self._send("start", desc, initial, total)

    def _send(self, *message: Any) -> None:
        try:
            _channel.put((os.getpid(), *message))
        except (OSError, ValueError):  # the parent went away: nothing to draw on
            pass

    def update(self, n: int = 1) -> None:
        self.n += n
        self._send("update", self.n, self.postfix)

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = {**(ordered_dict or {}), **kwargs}
        self.postfix = ", ".join(f"{key}={value}" for key, value in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""
        self._send("start", self.desc, self.n, self.total)

    def close(self) -> None:
        self._send("close")

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def bar(iterable: Iterable | None = None, *, total: int | None = None, initial: int = 0, desc: str = "",
        disable: bool = False, **kwargs: Any):
    """`tqdm.auto.tqdm(iterable, total=, initial=, desc=, disable=, **kwargs)`, except in a worker
    started with `worker_initializer`, where the parent draws it (kwargs such as `position`,
    `mininterval` or `dynamic_ncols` are then the parent's business and ignored)."""
    if _channel is not None and not disable:
        return _RelayBar(iterable, total, initial, desc)
    from tqdm.auto import tqdm  # here: a worker whose bars the parent draws never imports it

    return tqdm(iterable, total=total, initial=initial, desc=desc, disable=disable, **kwargs)


class WorkerBars:
    """The parent's side: one `tqdm.auto` bar per worker process that reports, at positions
    `first_position`, `first_position + 1`, ... in the order the workers first report."""

    def __init__(self, context, *, first_position: int = 1, enabled: bool = True):
        self.queue = context.Queue() if enabled else None
        self.first_position = first_position
        self.bars: dict[int, Any] = {}

    def initargs(self, start=None, *start_args) -> tuple:
        """`initargs` for `worker_initializer`; each worker also calls `start(*start_args)`
        (a picklable function) when it starts."""
        return (self.queue, start, *start_args)

    def _bar(self, pid: int):
        if pid not in self.bars:
            from tqdm.auto import tqdm

            self.bars[pid] = tqdm(total=None, position=self.first_position + len(self.bars), leave=True,
                                  dynamic_ncols=True, desc=f"worker {len(self.bars) + 1}")
        return self.bars[pid]

    def drain(self, settle: float = 0.0) -> None:
        """Apply every report waiting in the queue to the bars; with `settle` (seconds), go on
        until no report has come for that long. A worker's queue sends from a thread of its own,
        so its last reports of a job can reach the queue after the job's result has."""
        if self.queue is None:
            return
        while True:
            try:
                item = self.queue.get(timeout=settle) if settle > 0 else self.queue.get_nowait()
            except (queue_module.Empty, OSError, ValueError, EOFError):
                return
            pid, kind, *data = item
            shown = self._bar(pid)
            if kind == "start":
                desc, initial, total = data
                shown.reset(total=total)
                shown.set_description(desc, refresh=False)
                shown.update(initial)
            elif kind == "update":
                n, postfix = data
                shown.update(n - shown.n)
                shown.set_postfix_str(postfix, refresh=False)
                shown.refresh()
            elif kind == "close":
                shown.refresh()

    def close(self, *, drain: bool = True) -> None:
        """Close the bars (after applying the last reports, unless not `drain`: workers killed
        mid-report) and the queue."""
        if drain:
            self.drain()
        for shown in self.bars.values():
            shown.close()
        if self.queue is not None:
            self.queue.close()
            self.queue.join_thread()


def wait_drawing(futures: Iterable, bars: WorkerBars, *, interval: float = 0.5, on_done=None,
                 settle: float = 0.2) -> None:
    """Wait for `futures`, redrawing `bars` every `interval` seconds; `on_done(future)` is called
    for each as it finishes (e.g. to advance an overall bar and re-raise its error). Once all are
    done, reports that trail their job's result are still drawn until none has come for `settle`
    seconds (a worker's reports are best effort: see `worker_initializer`)."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=interval, return_when=FIRST_COMPLETED)
        bars.drain()
        for future in done:
            if on_done is not None:
                on_done(future)
    bars.drain(settle=settle)
