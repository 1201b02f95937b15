"""Every process the project starts dies with its parent, and a killed batch loses nothing:
the verify worker mid-grade, the notebook batch runner's kernel and its run-grid
pool workers, and a registry batch killed at random points then rerun.

Each test marks the processes it starts with an environment variable (inherited by every
descendant, whatever its session or parent) and finds them again through /proc; teardown
SIGKILLs whatever still carries its mark. Linux only: the parent-death signal is Linux's.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signals are Linux-only")

ROOT = Path(__file__).resolve().parents[1]
MARK = "SCOPE_TEST_PROCESS_MARK"


def marked_processes(mark: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process whose environment carries `mark`."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                if f"{MARK}={mark}".encode() not in handle.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry.name}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if state not in ("Z", "X"):  # a zombie is dead, waiting for init to reap it
            found.append((int(entry.name), cmdline[:160]))
    return found


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def wait_for(condition, timeout: float, what: str):
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (waited {timeout:.0f} s)")
        time.sleep(0.02)


def wait_until_none_alive(mark: str, timeout: float, after: str) -> None:
    left = []

    def none_alive():
        left[:] = marked_processes(mark)
        return not left

    deadline = time.monotonic() + timeout
    while not none_alive():
        if time.monotonic() > deadline:
            pytest.fail(f"{len(left)} process(es) still alive {timeout:.0f} s after {after}: {left}")
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_idle_verify_workers():
    """Stop the verify workers a test started in this process: they idle on by design, and a
    later test counting this process's children would take them for leftovers."""
    yield
    from scope_lib import verify_worker

    verify_worker._POOL.shutdown()


@pytest.fixture
def mark():
    """A fresh mark; every process still carrying it at teardown is SIGKILLed (by pid)."""
    value = uuid.uuid4().hex
    yield value
    for pid, _ in marked_processes(value):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def marked_env(mark: str, **extra) -> dict:
    return {**os.environ, MARK: mark, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


# --- the verify worker -------------------------------------------------------------------------

GRADE_FOREVER = r"""
from scope_lib.verify import is_correct
# starts a math-verify worker; its first comparison loads parsers (seconds on a starved machine)
assert is_correct(r"\boxed{\frac{1}{2}}", "0.5", timeout=60)
print("grading", flush=True)
is_correct(r"\boxed{9^{9^{9}}}", "1", timeout=600)  # minutes of big-integer arithmetic in C
"""


def test_verify_worker_dies_when_its_parent_is_killed_mid_grade(mark):
    parent = subprocess.Popen([sys.executable, "-c", GRADE_FOREVER], cwd=ROOT, env=marked_env(mark),
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert parent.stdout.readline().strip() == "grading", "the parent script failed before grading"
        workers = wait_for(lambda: [p for p in marked_processes(mark) if "--worker" in p[1]], 60, "no verify worker started")
        worker = workers[0][0]
        start = cpu_seconds(worker)
        wait_for(lambda: cpu_seconds(worker) > start + 0.3, 60, "the verify worker never got busy grading")
    finally:
        parent.kill()
        parent.wait()
    # Before the fix the worker went on at 99% CPU for minutes.
    wait_until_none_alive(mark, 20, "SIGKILL of the parent of is_correct")


def test_verify_worker_started_from_a_short_lived_thread_outlives_it():
    # The parent-death signal follows the thread that started a child: a worker started by a
    # grade_batch lane thread must not die with the lane, or every batch would restart them.
    import threading

    from scope_lib import verify_worker

    verify_worker.clear_cache()
    lane = threading.Thread(target=verify_worker.grade_pairs, args=([(r"\frac{1}{3}", "1/3")], 60.0))
    lane.start()
    lane.join()
    idle = list(verify_worker._POOL.idle)
    assert idle and all(w.proc is not None and w.proc.poll() is None for w in idle)
    pids = {w.proc.pid for w in idle}
    verify_worker.clear_cache()
    assert verify_worker.grade_pairs([(r"\frac{2}{6}", "1/3")], 60.0) == [True]
    assert {w.proc.pid for w in verify_worker._POOL.idle} == pids  # the same worker graded again


# --- the notebook batch runner -------------------------------------------------------------------


def write_notebook(path: Path, cells: list[tuple[str, list[str]]]) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source, metadata={"tags": tags}) for source, tags in cells]
    nbformat.write(notebook, str(path))


def history_rows(registry: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in registry.glob("*/metrics.jsonl"))


def test_killed_batch_runner_leaves_no_kernel_or_pool_worker(tmp_path, mark):
    notebooks, out = tmp_path / "notebooks", tmp_path / "executed"
    notebooks.mkdir()
    write_notebook(notebooks / "01_grid.ipynb", [
        ("SMOKE = False", ["parameters"]),
        ("from scope_lib.experiments.grid import run_grid\n"
         "run_grid('tiny', ['opd'], [0, 1], smoke=SMOKE, include_base=False, workers=2, steps=5000)", []),
    ])
    # Before the fix a smoke run trained into $SCOPE_RUNS_DIR; it must never be the shared runs/.
    legacy_registry = tmp_path / "registry"
    runner = subprocess.Popen(
        [sys.executable, "-m", "scope_lib.notebook.runner", "01", "--notebooks-dir", str(notebooks), "--out", str(out),
         "--smoke", "--no-progress"],
        cwd=ROOT, env=marked_env(mark, SCOPE_RUNS_DIR=str(legacy_registry)),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        # Both pool workers are training and writing to the registry ...
        wait_for(lambda: history_rows(out / "runs") + history_rows(legacy_registry) >= 2, 240,
                 "the notebook's pool workers never wrote a history row")
        assert len([p for p in marked_processes(mark) if "spawn_main" in p[1]]) == 2
    finally:
        runner.send_signal(signal.SIGKILL)  # ... when the batch runner is SIGKILLed.
        runner.wait()
    # The kernel notices its parent is gone within a second; its pool workers die with it.
    wait_until_none_alive(mark, 30, "SIGKILL of the batch runner")
    assert not legacy_registry.exists(), "a smoke run trained into the shared registry"


def test_interrupted_run_grid_stops_its_workers_at_once(tmp_path, mark):
    # Ctrl-C (or a notebook's interrupt button) used to wait in the pool's shutdown until every
    # running run had trained to its end.
    # Python's own Ctrl-C handler, whatever the test process passes down: after a full suite its
    # SIGINT is ignored (SIG_IGN, inherited across exec), and a child would then ignore Ctrl-C too.
    script = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "from scope_lib.experiments.grid import run_grid; "
              "run_grid('tiny', ['opd'], [0, 1], smoke=True, include_base=False, workers=2, steps=5000)")
    registry = tmp_path / "registry"
    batch = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=marked_env(mark, SCOPE_RUNS_DIR=str(registry)),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: history_rows(registry) >= 2 or batch.poll() is not None, 240, "the pool workers never trained")
        batch.send_signal(signal.SIGINT)
        try:
            _, stderr = batch.communicate(timeout=60)  # at once: the runs would take hours; 60 s leaves room for a loaded machine
        except subprocess.TimeoutExpired:
            pytest.fail("run_grid was still waiting for its workers 60 s after SIGINT")
    finally:
        batch.kill()
        batch.wait()
    assert "KeyboardInterrupt" in stderr
    wait_until_none_alive(mark, 30, "run_grid was interrupted")
    assert_histories_whole(registry, "after the interrupt")


# --- kill anywhere -------------------------------------------------------------------------------

GRID = dict(scale="tiny", variants=["opd"], seeds=[0, 1], smoke=True, include_base=False)
GRID_OVERRIDES = {"steps": 8, "checkpoint_every": 3}
GRID_SCRIPT = (
    "import sys; from scope_lib.experiments.grid import run_grid; "
    f"run_grid(**{GRID!r}, workers=2, **{GRID_OVERRIDES!r})"
)


def registry_state(registry: Path) -> dict:
    """Per run: its history without wall-clock columns, and its cached evaluation."""
    state = {}
    for run in sorted(registry.glob("opd-*")):
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        evals = {p.name: json.loads(p.read_text()) for p in run.glob("eval-*.json")}
        state[run.name] = {"history": [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows],
                           "evals": evals, "done": (run / "done.json").exists()}
    return state


def assert_histories_whole(registry: Path, when: str) -> None:
    for path in registry.glob("*/metrics.jsonl"):
        steps = [json.loads(line)["step"] for line in path.read_text().splitlines()]
        assert steps == list(range(1, len(steps) + 1)), f"{when}: {path} holds steps {steps}"


@pytest.mark.slow  # about a minute on 2 cores; the default suite kills a run mid-training in tests/test_trainer.py
def test_registry_batch_killed_anywhere_reruns_to_the_uninterrupted_result(tmp_path, mark, monkeypatch):
    from scope_lib.experiments.grid import run_grid

    total_rows = len(GRID["seeds"]) * GRID_OVERRIDES["steps"]
    # The uninterrupted batch, in this process (one worker: the runs are the same in any process).
    monkeypatch.setenv("SCOPE_RUNS_DIR", str(tmp_path / "straight"))
    run_grid(**GRID, workers=1, **GRID_OVERRIDES)
    reference = registry_state(tmp_path / "straight")
    assert len(reference) == 2 and all(len(r["history"]) == GRID_OVERRIDES["steps"] and r["evals"] for r in reference.values())

    seed = int(os.environ.get("SCOPE_KILL_SEED", "14"))
    rng = random.Random(seed)
    trials = 3
    for trial in range(trials):
        # Trial t kills once the registry holds a random number of history rows from the t-th
        # third of the batch (so early, middle and late kills all occur), plus up to 0.3 s.
        rows_before_kill = rng.randint(trial * total_rows // trials, (trial + 1) * total_rows // trials)
        delay = rng.uniform(0, 0.3)
        when = f"trial {trial} (SCOPE_KILL_SEED={seed}: kill after {rows_before_kill} rows + {delay:.2f} s)"
        registry = tmp_path / f"trial{trial}"
        batch = subprocess.Popen([sys.executable, "-c", GRID_SCRIPT], cwd=ROOT,
                                 env=marked_env(mark, SCOPE_RUNS_DIR=str(registry)),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: history_rows(registry) >= rows_before_kill or batch.poll() is not None, 240,
                     f"{when}: the batch wrote no history")
            time.sleep(delay)  # a random instant past the trigger: mid-step, mid-checkpoint, mid-eval
        finally:
            batch.send_signal(signal.SIGKILL)
            batch.wait()
        wait_until_none_alive(mark, 30, f"SIGKILL of the batch in {when}")
        assert_histories_whole(registry, f"after the kill in {when}")
        monkeypatch.setenv("SCOPE_RUNS_DIR", str(registry))
        run_grid(**GRID, workers=1, **GRID_OVERRIDES)  # the rerun
        assert_histories_whole(registry, f"after the rerun in {when}")
        assert registry_state(registry) == reference, f"{when}: the rerun differs from the uninterrupted batch"
