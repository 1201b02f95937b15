"""Progress of work in worker processes (scope_lib.common.progress): the workers draw nothing on the
shared stderr (neither their own bars nor transformers'), and the parent draws one line per
worker, reused from one job to the next, that ends where each job ended."""

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from scope_lib.common import progress
from scope_lib.verify_worker import die_with_parent


def job(steps: int, name: str) -> int:
    """Report `steps` steps, and run a transformers bar as loading weights does."""
    from transformers.utils import logging

    list(logging.tqdm(range(3), desc="Loading weights"))
    bar = progress.bar(total=steps, desc=name)
    for _ in range(steps):
        bar.update(1)
        bar.set_postfix({"loss": "0.5"})
    bar.close()
    list(progress.bar(range(2), desc=f"{name} evaluate"))
    return os.getpid()


class Recorded:
    """Stands for tqdm.auto.tqdm in the parent: records what it was asked to draw."""

    made = []

    def __init__(self, *args, **kwargs):
        self.kwargs, self.n, self.total, self.desc, self.postfix, self.closed = kwargs, 0, None, "", "", False
        Recorded.made.append(self)

    def reset(self, total=None):
        self.n, self.total = 0, total

    def set_description(self, desc, refresh=True):
        self.desc = desc

    def update(self, n=1):
        self.n += n

    def set_postfix_str(self, text, refresh=True):
        self.postfix = text

    def refresh(self):
        pass

    def close(self):
        self.closed = True


def reporting_pool(monkeypatch, workers: int):
    """(bars, pool): `workers` spawned processes whose bars report to `bars`, drawn by `Recorded`."""
    import tqdm.auto

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorded)
    Recorded.made = []
    context = multiprocessing.get_context("spawn")
    bars = progress.WorkerBars(context)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=progress.worker_initializer,
                               initargs=bars.initargs(die_with_parent, os.getpid()))
    return bars, pool


def test_workers_report_to_one_line_each_and_draw_nothing(monkeypatch, capfd):
    bars, pool = reporting_pool(monkeypatch, 2)
    with pool:
        futures = [pool.submit(job, steps, f"job {steps}") for steps in (3, 5, 4)]
        progress.wait_drawing(futures, bars, interval=0.1)
        pids = {future.result() for future in futures}
    bars.close()
    assert capfd.readouterr().err == ""  # no worker wrote to stderr: no bar, no escape code
    assert len(Recorded.made) == len(pids) <= 2  # one line per worker process
    assert [b.kwargs["position"] for b in Recorded.made] == list(range(1, len(pids) + 1))
    assert all(b.closed for b in Recorded.made)
    last = {b.desc: b for b in Recorded.made}  # each line ends on the last job its worker ran: its evaluation
    assert all(desc.endswith(" evaluate") and b.n == b.total == 2 for desc, b in last.items())


def late_job(delay: float) -> int:
    """Return at once, and report a finished bar `delay` seconds later, as a worker's queue
    thread can when it sends a job's last reports after the job's result has gone."""
    import threading

    def report():
        shown = progress.bar(total=1, desc="late")
        shown.update(1)
        shown.close()

    threading.Timer(delay, report).start()
    return os.getpid()


def test_reports_that_trail_the_result_are_drawn_while_they_settle(monkeypatch):
    bars, pool = reporting_pool(monkeypatch, 1)
    with pool:
        progress.wait_drawing([pool.submit(late_job, 0.1)], bars, interval=0.05, settle=1.0)
        seen = [(b.desc, b.n) for b in Recorded.made]
    bars.close(drain=False)
    # the report sent 0.1 s after the job's result is drawn before wait_drawing returns (without
    # the settling it was not: checked by hand, wait_drawing then returns as the result comes)
    assert seen == [("late", 1)]


def test_outside_a_reporting_worker_bar_is_tqdm():
    from tqdm.auto import tqdm

    assert not progress.relaying()
    shown = progress.bar(total=3, desc="here", disable=True)
    assert isinstance(shown, tqdm)
    shown.close()


def test_a_relay_bar_reports_each_change():
    class Channel(list):
        def put(self, item):
            self.append(item)

    monkeypatch = pytest.MonkeyPatch()
    channel = Channel()
    monkeypatch.setattr(progress, "_channel", channel)
    try:
        shown = progress.bar(total=2, initial=1, desc="scope tiny")
        shown.update(1)
        shown.set_postfix({"accuracy": "0.25"})
        shown.update(1)
        shown.close()
    finally:
        monkeypatch.undo()
    pid = os.getpid()
    assert channel == [(pid, "start", "scope tiny", 1, 2), (pid, "update", 2, ""), (pid, "update", 3, "accuracy=0.25"),
                       (pid, "close")]
