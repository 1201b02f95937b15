"""Batch judging (`sandbox.judge_many`): one sandbox for many programs, judge()'s verdicts.

Every adversarial program of tests/test_sandbox.py runs in the middle of a batch of correct
programs: it is judged failed and contained, the programs around it are judged correctly, no
process is left, and the batch returns within its bound. Programs that leave processes or files
behind are followed by programs that check they cannot see them.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from scope_lib.grading import sandbox, sandbox_launch
from scope_lib.grading.sandbox import Limits, judge, judge_many
from test_sandbox import SLACK, _sandbox_processes, loopback_server, peak_sandbox_processes  # noqa: F401  (same helpers as the single-program tests)

ADD = {"kind": "stdio", "cases": [["2 3\n", "5\n"], ["10 -4\n", "6\n"]]}
CORRECT = "a, b = map(int, input().split())\nprint(a + b)\n"
CALL = {"kind": "call", "fn_name": "add", "cases": [[[1, 2], 3], [[2, 2], 4]], "compare": "lcb"}
CHECK = {"kind": "check", "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n",
         "entry_point": "add"}
CORRECT_FN = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module", autouse=True)
def _isolation_available():
    sandbox.check_isolation()


def _same(batch, single) -> None:
    for index, (got, want) in enumerate(zip(batch, single)):
        assert (got.status, got.passed, got.total, got.detail) == (want.status, want.passed, want.total, want.detail), \
            f"program {index}: batch {got} != single {want}"
        assert (got.stdout, got.stderr) == (want.stdout, want.stderr), f"program {index}: output differs"


def _no_leftovers() -> None:
    for _ in range(20):  # the host's view of a sandbox that has just exited can lag a moment
        if not _sandbox_processes():
            return
        time.sleep(0.05)
    assert _sandbox_processes() == [], f"processes left behind: {_sandbox_processes()}"


def test_judge_many_equals_judge_for_every_test_style():
    stdio = [CORRECT, "print(5)", "def f(:\n", "raise ValueError('boom')", "while True:\n    pass\n",
             "import sys\nprint('diag', file=sys.stderr)\n" + CORRECT]
    functions = [CORRECT_FN, "def add(a, b):\n    return a - b\n", "def add(a, b:\n", "def add(a, b):\n    raise KeyError(a)\n",
                 "def add(a, b):\n    while True:\n        pass\n", "print('loading')\n" + CORRECT_FN,
                 "raise RuntimeError('at load')\n"]
    for spec, sources in ((ADD, stdio), (CALL, functions), (CHECK, functions)):
        batch, elapsed = _timed(judge_many, sources, spec, 1, batch_size=4)  # two batches
        single = [judge(source, spec, 1) for source in sources]
        _same(batch, single)
        assert batch[0].correct and not any(report.correct for report in batch[1:5])
        assert elapsed < 20, f"{spec['kind']}: {elapsed:.1f}s"
    # one spec per program, mixed kinds in one batch
    mixed_sources, mixed_specs = [CORRECT, CORRECT_FN, CORRECT_FN, "print(1)"], [ADD, CALL, CHECK, ADD]
    _same(judge_many(mixed_sources, mixed_specs, 2), [judge(s, t, 2) for s, t in zip(mixed_sources, mixed_specs)])
    _no_leftovers()


def test_a_program_starts_with_the_modules_it_has_under_judge():
    # What the programs' processes import is imported once by the sandbox script, before its
    # forks: a program still finds the interpreter as a single judge() leaves it (the same
    # modules, in the same order), in each test style.
    listing = "import sys\nprint(list(sys.modules))\n"
    stdio = "import sys, zlib\nprint(zlib.crc32(repr(list(sys.modules)).encode()))\n"  # a case's output: a checksum
    sources, specs = [listing + CORRECT_FN, listing + CORRECT_FN, stdio, CORRECT], [CALL, CHECK, ADD, ADD]
    batch = judge_many(sources, specs, 2)
    single = [judge(s, t, 2) for s, t in zip(sources, specs)]
    _same(batch, single)
    assert "'traceback'" in batch[0].stdout and batch[0].correct and batch[1].correct, batch[:2]
    assert batch[2].status == "failed" and "wrong answer" in batch[2].detail and batch[3].correct, batch[2:]


def test_judge_many_rejects_bad_arguments_by_name():
    with pytest.raises(ValueError, match="tests"):
        judge_many([CORRECT, CORRECT], [ADD])
    with pytest.raises(ValueError, match="batch_size"):
        judge_many([CORRECT], ADD, batch_size=0)
    with pytest.raises(ValueError, match=r"sources\[1\]"):
        judge_many([CORRECT, b"x"], ADD)
    with pytest.raises(ValueError, match="timeout"):
        judge_many([CORRECT], ADD, timeout=0)
    assert judge_many([], ADD) == []


def _timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


def _in_the_middle(hostile: str, spec: dict, timeout: float, bound: float, limits: Limits | None = None):
    """[correct, correct, hostile, correct, correct] in one batch: the neighbours pass, the
    batch returns within `bound`, nothing is left; returns the hostile program's report."""
    correct = CORRECT if spec["kind"] == "stdio" else CORRECT_FN
    reports, elapsed = _timed(judge_many, [correct, correct, hostile, correct, correct], spec, timeout, limits=limits)
    for index in (0, 1, 3, 4):
        assert reports[index].correct, f"neighbour {index} of the hostile program: {reports[index]}"
    assert not reports[2].correct, reports[2]
    assert elapsed <= bound, f"the batch took {elapsed:.2f}s, over its bound of {bound:.2f}s"
    _no_leftovers()
    return reports[2]


# ---------------------------------------------------------------------------------------------
# every adversarial program of tests/test_sandbox.py, in the middle of a batch


def test_infinite_loop_in_a_batch():
    report = _in_the_middle("while True:\n    pass\n", ADD, 1, 1 + SLACK + 2)
    assert report.status == "timeout", report
    report = _in_the_middle("def add(a, b):\n    while True:\n        pass\n", CHECK, 1, 1 + SLACK + 2)
    assert report.status == "timeout", report


def test_fork_bomb_in_a_batch():
    # As in test_sandbox.py: the process cap is first shown to hold for harmless sleepers.
    sleepers = ("import os, time\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n"
                "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
                "    n += 1\nprint(n)\n")
    report = _in_the_middle(sleepers, ADD, 5, 5 + SLACK + 2, limits=Limits(max_processes=16))
    started = int(report.detail.split("got '")[1].split("'")[0])
    assert 1 <= started <= 15, report
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    with peak_sandbox_processes() as peak:
        report = _in_the_middle(bomb, ADD, 2, 2 + SLACK + 2, limits=Limits(max_processes=16))
    assert report.status == "timeout", report
    # bwrap, the batch's init, the program's supervisor and runner, and at most 16 of the program's processes
    assert peak[0] <= 16 + 4, f"{peak[0]} sandbox processes at once under a cap of 16"


def test_memory_bomb_in_a_batch():
    report = _in_the_middle("x = bytearray(8 * 1024 ** 3)\nprint('allocated')", ADD, 5, 5 + SLACK)
    assert report.status == "failed" and "MemoryError" in report.detail, report


def test_one_gigabyte_write_to_tmp_in_a_batch():
    one_file = ("import os\ntry:\n    with open('/tmp/big', 'wb') as f:\n        for _ in range(1024):\n"
                "            f.write(b'x' * (1 << 20))\nexcept OSError as e:\n    print(type(e).__name__, e.errno)\n"
                "print(os.path.getsize('/tmp/big'))\n")
    report = _in_the_middle(one_file, ADD, 10, 10 + SLACK)
    got = report.detail.split("got '")[1].split("'")[0].split()
    assert got[:2] == ["OSError", "27"] and int(got[2]) <= 16 << 20, report  # EFBIG: RLIMIT_FSIZE
    # the tmpfs filled to the brim by one program is empty again for the next
    fill = ("written = 0\ntry:\n    for i in range(64):\n        with open(f'/tmp/part{i}', 'wb') as f:\n"
            "            for _ in range(16):\n                f.write(b'x' * (1 << 20))\n                written += 1 << 20\n"
            "except OSError as e:\n    print(e.errno)\nprint(written)\n")
    writes_again = "with open('/tmp/again', 'wb') as f:\n    f.write(b'x' * (12 << 20))\n" + CORRECT
    reports = judge_many([fill, writes_again], ADD, 10, limits=Limits(tmp_size_mb=32))
    assert "got '28" in reports[0].detail, reports[0]  # ENOSPC: the tmpfs is full
    assert reports[1].correct, reports[1]
    _no_leftovers()


def test_writing_outside_tmp_in_a_batch(tmp_path):
    host_file = tmp_path / "host.txt"
    host_file.write_text("original")
    targets = ["/evil", "/sandbox/sandbox_inside_supervisor.py", "/usr/evil", "/dev/shm/evil", "/proc/sys/kernel/hostname",
               str(host_file), os.path.join(os.path.dirname(os.__file__), "evil.py")]
    program = (f"n = 0\nfor path in {targets!r}:\n    try:\n        with open(path, 'w') as f:\n            f.write('x')\n"
               "        print('WROTE', path)\n    except OSError:\n        n += 1\nprint('denied', n)\n")
    report = _in_the_middle(program, ADD, 5, 5 + SLACK)
    assert f"got 'denied {len(targets)}'" in report.detail, report
    assert host_file.read_text() == "original"
    assert not os.path.exists(os.path.join(os.path.dirname(os.__file__), "evil.py"))


def test_reading_files_outside_the_sandbox_in_a_batch(tmp_path):
    secret = f"secret-{os.getpid()}-{time.time_ns()}"
    planted = tmp_path / "planted.txt"
    planted.write_text(secret)
    targets = [str(planted), "/etc/passwd", "/etc/shadow", os.path.expanduser("~/.bashrc")]
    program = (f"n = 0\nfor path in {targets!r}:\n    try:\n        print(open(path).read())\n"
               "    except OSError:\n        n += 1\nprint('denied', n)\n")
    report = _in_the_middle(program, ADD, 5, 5 + SLACK)
    assert secret not in report.detail + report.stdout + report.stderr
    assert f"got 'denied {len(targets)}'" in report.detail, report


def test_loopback_connection_in_a_batch():
    with loopback_server() as (port, accepted):
        program = (f"import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                   "    s.sendall(b'sandbox')\n    print('CONNECTED')\nexcept OSError as e:\n    print('refused')\n")
        report = _in_the_middle(program, ADD, 5, 5 + SLACK)
        time.sleep(0.3)
    assert "got 'refused'" in report.detail, report
    assert accepted == [], "the sandboxed program reached the host's loopback server"


def test_secret_environment_variable_in_a_batch(monkeypatch):
    secret = f"token-{time.time_ns()}"
    monkeypatch.setenv("SCOPE_TEST_SECRET", secret)
    program = ("import os\nseen = str(dict(os.environ))\nfor pid in ('self', '1'):\n    try:\n"
               "        seen += str(open(f'/proc/{pid}/environ', 'rb').read())\n    except OSError:\n        pass\n"
               f"print('LEAK' if {secret!r} in seen or 'SCOPE_TEST_SECRET' in seen else 'nothing')\n")
    report = _in_the_middle(program, ADD, 5, 5 + SLACK)
    assert "got 'nothing'" in report.detail, report


def test_killing_the_parent_and_everything_in_a_batch():
    killer = ("import os, signal\nfor target in (os.getppid(), 1, -1):\n    try:\n        os.kill(target, signal.SIGKILL)\n"
              "    except OSError:\n        pass\nprint('wrong')\n")
    report = _in_the_middle(killer, ADD, 5, 5 + SLACK)
    assert report.status in ("failed", "no_verdict"), report
    hidden = ("import os\nfor target in (os.getppid(), 1, -1):\n    try:\n        os.kill(target, 9)\n    except OSError:\n"
              "        pass\ndef add(a, b):\n    return a - b\n")
    report = _in_the_middle(hidden, CHECK, 5, 5 + SLACK)
    assert report.status in ("failed", "no_verdict"), report


def test_hundred_megabytes_of_stdout_in_a_batch():
    program = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\n"
    report = _in_the_middle(program, ADD, 30, 10)
    assert report.status == "failed" and "output limit" in report.detail, report
    # printed at load time in a function-call test: captured up to Limits.output_bytes, as judge() does
    loud = program + "def add(a, b):\n    return a - b\n"
    report = _in_the_middle(loud, CHECK, 30, 30)
    assert len(report.stdout) == 1 << 20 and report.status == "failed", report.status


@pytest.mark.parametrize("early_exit", ["exit(0)", "import os\nos._exit(0)"])
def test_exit_zero_before_the_tests_in_a_batch(early_exit):
    report = _in_the_middle(early_exit + "\n" + CORRECT_FN, CHECK, 5, 5 + SLACK)
    assert report.status == "failed", report
    report = _in_the_middle(early_exit + "\nprint(5)", ADD, 5, 5 + SLACK)
    assert report.status == "failed", report


# ---------------------------------------------------------------------------------------------
# nothing leaks from one program to the next


def test_processes_and_files_do_not_outlive_their_program():
    leaves = ("import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)\n"
              "if os.fork() == 0:\n    os.setsid()\n    time.sleep(30)\n    os._exit(0)\n"
              "open('/tmp/leak', 'w').write('x')\nos.makedirs('/tmp/d/e')\nopen('/tmp/d/e/f', 'w').write('x')\n"
              "os.chmod('/tmp/d/e', 0)\nos.chmod('/tmp/d', 0)\nos.symlink('/sandbox/sandbox_inside_supervisor.py', '/tmp/link')\n"
              "print(len([p for p in os.listdir('/proc') if p.isdigit()]))\n")
    checks = ("import os\nprocs = [p for p in os.listdir('/proc') if p.isdigit()]\n"
              "print('clean' if not os.listdir('/tmp') and len(procs) <= 4 else f'dirty {os.listdir(\"/tmp\")} {procs}')\n")
    clean = {"kind": "stdio", "cases": [["", "clean\n"]]}
    reports = judge_many([leaves, checks, leaves, checks], clean, 5)
    seen = int(reports[0].detail.split("got '")[1].split("'")[0])
    assert seen >= 4 + 6, reports[0]  # the leftovers were really there while it ran
    assert reports[1].correct and reports[3].correct, reports
    _no_leftovers()


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def _kept_init() -> int:
    """The init of the one kept sandbox (the kept process whose parent, bwrap, is kept too)."""
    kept = sandbox_launch.kept_sandbox_pids()
    assert len(kept) == 2, f"expected one kept sandbox (bwrap and its init), got the processes {kept}"
    (init,) = [pid for pid in kept if _parent(pid) in kept]
    return init


def test_a_kept_sandbox_judges_the_next_batch_with_nothing_left_of_the_last():
    leaves = ("import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)\n"
              "open('/tmp/leak', 'w').write('x')\nos.makedirs('/tmp/d/e')\nprint('left')\n")
    checks = ("import os\nprocs = [p for p in os.listdir('/proc') if p.isdigit()]\n"
              "print('clean' if not os.listdir('/tmp') and len(procs) <= 4 else f'dirty {os.listdir(\"/tmp\")} {procs}')\n")
    clean = {"kind": "stdio", "cases": [["", "clean\n"]]}
    sandbox_launch.close_servers()
    first = judge_many([leaves], clean, 5)
    assert "got 'left'" in first[0].detail, first
    init = _kept_init()
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == init]
    assert children == [], f"processes left in the kept sandbox between batches: {children}"
    second = judge_many([checks, CORRECT], [clean, ADD], 5)
    assert _kept_init() == init, "the second batch did not run in the kept sandbox"
    assert second[0].correct and second[1].correct, second
    kept = sandbox_launch.kept_sandbox_pids()
    cgroups = [server.launch.cgroup.path for server in sandbox_launch._kept if server.launch.cgroup is not None]
    sandbox_launch.close_servers()
    assert sandbox_launch.kept_sandbox_pids() == set()
    assert not any(path.exists() for path in cgroups), "a closed kept sandbox left its memory cgroup"
    for _ in range(40):
        if not any(Path(f"/proc/{pid}").exists() for pid in kept):
            break
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() for pid in kept), "a closed kept sandbox is still running"


def test_a_kept_sandbox_that_has_ended_is_replaced():
    sandbox_launch.close_servers()
    assert judge_many([CORRECT], ADD, 5)[0].correct
    kept = sandbox_launch.kept_sandbox_pids()
    os.kill(_kept_init(), signal.SIGKILL)
    reports = judge_many([CORRECT, "print(4)", CORRECT], ADD, 5)
    assert [r.correct for r in reports] == [True, False, True], reports
    assert not sandbox_launch.kept_sandbox_pids() & kept
    _no_leftovers()


def test_programs_drop_every_capability():
    program = "print([line.split()[1] for line in open('/proc/self/status') if line.startswith(('CapEff', 'CapPrm'))])\n"
    reports = judge_many([program, CORRECT], [{"kind": "stdio", "cases": [["", "['0000000000000000', '0000000000000000']\n"]]},
                                             ADD], 5)
    assert reports[0].correct and reports[1].correct, reports


def test_a_sandbox_that_is_not_clean_is_replaced_and_the_rest_rejudged():
    # A SysV shared-memory segment outlives its process: the init sees it after the program and
    # stops; the programs after it run in a fresh sandbox and are judged as ever.
    leaves_shm = ("import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                  "print('shm', libc.shmget(0x5C09E, 4096, 0o1666) >= 0)\n")
    sources = [CORRECT, leaves_shm, CORRECT, "print(4)", CORRECT]
    reports = judge_many(sources, ADD, 5)
    assert "got 'shm True'" in reports[1].detail, reports[1]
    assert [r.correct for r in reports] == [True, False, True, False, True], reports
    _no_leftovers()


def test_a_forked_child_leaves_its_parents_kept_sandbox_alone():
    sandbox_launch.close_servers()
    assert judge_many([CORRECT], ADD, 5)[0].correct
    kept = sandbox_launch.kept_sandbox_pids()
    pid = os.fork()
    if pid == 0:  # the child: none of the parent's sandboxes is its own; it judges in its own
        status = 1
        try:
            inherited = sandbox_launch.kept_sandbox_pids()
            reports = judge_many([CORRECT, "print(4)"], ADD, 5)
            mine = sandbox_launch.kept_sandbox_pids()
            sandbox_launch.close_servers()
            status = 0 if not inherited and [r.correct for r in reports] == [True, False] and not mine & kept else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sandbox_launch.kept_sandbox_pids() == kept and _kept_init() in kept  # still the parent's, alive
    reports = judge_many([CORRECT], ADD, 5)
    assert reports[0].correct and sandbox_launch.kept_sandbox_pids() == kept
    _no_leftovers()
