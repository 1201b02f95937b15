"""A sandboxed program cannot make namespaces of its own (scope_lib/grading/sandbox_launch.py, `_seccomp_filter`):
a user namespace would hand it capabilities, a network namespace its own interfaces; and its
processes together are held to `Limits.sandbox_memory_mb` by a memory cgroup where one can be
made. Hostile programs run under a process cap (`Limits.max_processes`), as in
tests/test_sandbox.py."""

import os
import random
import subprocess

import pytest

from scope_lib.grading import sandbox, sandbox_launch
from scope_lib.grading.sandbox import Limits, judge_many, run

try:
    sandbox.check_isolation()
except sandbox.SandboxUnavailable as error:  # pragma: no cover - machines without bwrap
    pytest.skip(f"bwrap sandbox unavailable: {error}", allow_module_level=True)

FLAGS = {"user": 0x10000000, "net": 0x40000000, "mount": 0x00020000, "pid": 0x20000000}

PROBE = """
import ctypes, os, threading
libc = ctypes.CDLL(None, use_errno=True)
for name, flag in {flags}.items():
    print(name, libc.unshare(flag), ctypes.get_errno())
pid = os.fork()  # an ordinary fork and thread still work
if pid == 0:
    os._exit(7)
print("fork", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
box = []
thread = threading.Thread(target=box.append, args=({token},))
thread.start(); thread.join()
print("thread", box[0])
"""


def test_program_cannot_create_namespaces():
    rng = random.Random(13)
    names = rng.sample(sorted(FLAGS), len(FLAGS))
    token = rng.randrange(10**6)
    result = run(PROBE.format(flags={n: FLAGS[n] for n in names}, token=token), timeout=20,
                 limits=Limits(max_processes=4))
    assert result.returncode == 0, result
    lines = result.stdout.splitlines()
    # before: "user 0 0" and "net 0 0" (a new user and network namespace)
    assert lines[: len(names)] == [f"{name} -1 1" for name in names], result.stdout  # EPERM
    assert lines[len(names):] == ["fork 7", f"thread {token}"]


def test_batch_programs_cannot_create_namespaces():
    source = "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\nprint(libc.unshare(0x10000000), ctypes.get_errno())\n"
    tests = {"kind": "stdio", "cases": [["", "-1 1\n"]]}
    reports = judge_many([source, source], tests, timeout=10, limits=Limits(max_processes=4), batch_size=2)
    assert [report.correct for report in reports] == [True, True], reports


MEMORY_PROBE = """
import os, time
pids = []
for _ in range({children}):
    pid = os.fork()
    if pid == 0:
        block = b"x" * ({each_mb} << 20)  # written, so every page is charged
        time.sleep(0.5)
        os._exit(0)
    pids.append(pid)
print(*[os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids])
"""


def test_memory_is_capped_for_the_whole_sandbox():
    sandbox_launch.close_servers()  # batch sandboxes kept by earlier tests hold their cgroups until closed
    probe = sandbox_launch._MemoryCgroup.create(64)
    if probe is None:
        pytest.skip("no memory cgroup can be made here: the sandbox falls back to per-process limits (Limits docs)")
    probe.remove()
    rng = random.Random(17)
    children, each_mb = rng.randrange(3, 5), rng.randrange(120, 160)
    program = MEMORY_PROBE.format(children=children, each_mb=each_mb)
    # each child is far below memory_mb (RLIMIT_AS); together they are over the sandbox's cap
    capped = run(program, timeout=30, limits=Limits(max_processes=8, sandbox_memory_mb=256))
    codes = [int(code) for code in capped.stdout.split()]
    assert len(codes) == children and -9 in codes, capped  # before: all exited 0 (no cap for the sandbox)
    roomy = run(program, timeout=30, limits=Limits(max_processes=8, sandbox_memory_mb=2048))
    assert roomy.stdout.split() == ["0"] * children, roomy
    assert not list(probe.path.parent.glob(f"scope-sandbox-{os.getpid()}-*")), "a sandbox cgroup was left behind"


def test_cgroups_left_by_ended_processes_are_removed():
    # A process that ends by os._exit, or is killed, leaves the memory cgroups of the sandboxes
    # it kept; the next sandbox made under the same parent removes them, and only them.
    live = sandbox_launch._MemoryCgroup.create(64)
    if live is None:
        pytest.skip("no memory cgroup can be made here: the sandbox falls back to per-process limits (Limits docs)")
    ended = subprocess.Popen(["true"])
    ended.wait()
    stale = live.path.parent / f"scope-sandbox-{ended.pid}-0123456789ab"
    stale.mkdir()
    fresh = sandbox_launch._MemoryCgroup.create(64)
    try:
        assert not stale.exists(), "the cgroup of an ended process was left"
        assert live.path.exists(), "the cgroup of a running process was removed"
    finally:
        for cgroup in (live, fresh):
            cgroup.remove()
        if stale.exists():
            stale.rmdir()
