"""Inside the sandbox: the supervisor, the program the sandbox runs
(`python /sandbox/sandbox_inside_supervisor.py --supervise CONFIG`, or `--supervise-batch CONFIG`
for batch mode, or `--supervise-server CONFIG` for a batch sandbox kept for many batches). Trusted: it holds the tests, the nonce and the report pipe. Mounted read-only
with scope_lib/grading/sandbox_inside_runner.py and scope_lib/grading/sandbox_wire.py; imports only the
standard library. The host side is scope_lib/grading/sandbox.py.

Who decides the verdict. The supervisor forks the program's side (the runner) before it reads
anything secret, then reads the request (the tests, the expected outputs, a random nonce) from
a file descriptor the program's side never had. It alone compares outputs (expected outputs
never reach the program) or runs HumanEval's `check(candidate)`, where `candidate` forwards each
call to the program's process and brings back only plain data. It writes the report, ending
with the nonce, on a pipe only it holds.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

if __package__:  # imported on the host, as part of the package
    from .sandbox_inside_runner import _become_program, _close_all_but, _runner, _wait_child
    from .sandbox_wire import _HEADER, _PeerGone, _decode, _encode, _first_line, _read_frame, _write_frame, outputs_match
else:  # inside the sandbox: a script, run from the files mounted beside each other in /sandbox
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's folder out
    try:
        from sandbox_inside_runner import _become_program, _close_all_but, _runner, _wait_child
        from sandbox_wire import _HEADER, _PeerGone, _decode, _encode, _first_line, _read_frame, _write_frame, outputs_match
    finally:
        del sys.path[0]  # the program imports from where it would have without us

# What each program's two processes import (the runner's `_become_program` and `_fresh_module`,
# the supervisor's `_supervise`), imported once here, before anything is forked, in single and
# batch mode alike. A batch's init thus imports it once for the whole batch instead of every
# program's processes once each (traceback alone is several milliseconds), and a program's
# process starts with the same modules in both modes (tests/test_sandbox_batch.py checks it).
import _sitebuiltins  # noqa: E402,F401
import builtins  # noqa: E402,F401
import decimal  # noqa: E402,F401  (outputs_match, stdio mode)
import io  # noqa: E402,F401
import linecache  # noqa: E402,F401
import math  # noqa: E402,F401
import resource  # noqa: E402,F401
import traceback  # noqa: E402,F401
import types  # noqa: E402,F401


def _reap_orphans() -> None:
    # The supervisor is the sandbox's init: processes the program orphaned end up as its
    # children, and their zombies would count against the program's process limit.
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


class _Abort(BaseException):
    """Ends a check: BaseException, so a test's `except Exception:` cannot swallow it."""


class ProgramError(Exception):
    """The program raised an exception that is not a built-in one (in a function-call test)."""


class _Session:
    """The supervisor's end of the runner's pipes."""

    def __init__(self, command_fd: int, reply_fd: int, deadline: float, max_frame: int):
        self.command_fd, self.reply_fd, self.deadline, self.max_frame = command_fd, reply_fd, deadline, max_frame
        self.failure: str | None = None  # set once, never cleared: the verdict cannot recover
        self.passed = 0  # cases passed so far (reported when a later case aborts)

    def exchange(self, message: dict, deadline: float | None = None) -> dict:
        deadline = self.deadline if deadline is None else min(deadline, self.deadline)
        _reap_orphans()
        try:
            _write_frame(self.command_fd, message, deadline)
            reply = _read_frame(self.reply_fd, deadline, self.max_frame)
        except TimeoutError:
            self.failure = self.failure or "timeout"
            raise _Abort from None
        except (_PeerGone, ValueError, UnicodeDecodeError) as error:
            self.failure = self.failure or f"the program's process ended or broke the protocol ({type(error).__name__})"
            raise _Abort from None
        if not isinstance(reply, dict):
            self.failure = self.failure or "malformed reply from the program's process"
            raise _Abort
        return reply

    def call(self, name: str, args: tuple, kwargs: dict, timeout: float | None = None):
        try:
            message = {"name": name, "args": _encode(list(args)), "kwargs": _encode(dict(kwargs))}
        except (TypeError, ValueError) as error:
            raise _TestError(f"the test passes an argument that cannot be sent to the program: {error}") from None
        reply = self.exchange(message, None if timeout is None else time.monotonic() + timeout)
        if "value" in reply:
            try:
                return _decode(reply["value"])
            except (ValueError, TypeError, OverflowError) as error:
                self.failure = self.failure or f"malformed return value ({error})"
                raise _Abort from None
        import builtins

        name, message = str(reply.get("error")), str(reply.get("message"))
        builtin = getattr(builtins, name, None)
        if isinstance(builtin, type) and issubclass(builtin, Exception) and not issubclass(builtin, _SAFE_EXCLUDED):
            raise builtin(message)
        raise ProgramError(f"{name}: {message}")


_SAFE_EXCLUDED = (OSError,)  # OSError's constructor reinterprets its arguments; report it as ProgramError


class _TestError(BaseException):
    """The test itself is broken (its code does not run, or it sends unsendable arguments)."""


class _Candidate:
    """What HumanEval's `check(candidate)` receives: each call runs in the program's process."""

    def __init__(self, session: _Session, name: str, timeout: float | None = None):
        self._session, self.__name__, self._timeout = session, name, timeout

    def __call__(self, *args, **kwargs):
        return self._session.call(self.__name__, args, kwargs, self._timeout)


def _judge_stdio(session: _Session, spec: dict, timeout: float) -> tuple[str, int, str]:
    float_tolerance = spec.get("float_tolerance")
    for index, (case_input, expected) in enumerate(spec["cases"]):
        # The runner kills a case at `timeout`; the margin covers the fork and the reply.
        result = session.exchange({"input": case_input, "timeout": timeout}, time.monotonic() + timeout + 2.0)
        if result.get("timed_out"):
            return "timeout", index, f"test {index}: time limit of {timeout:g}s exceeded"
        if result.get("output_limit"):
            return "failed", index, f"test {index}: output limit exceeded"
        if result.get("returncode") != 0:
            return "failed", index, f"test {index}: exit status {result.get('returncode')}: {_first_line(result.get('stderr', ''))}"
        if not isinstance(result.get("stdout"), str) or not outputs_match(result["stdout"], expected, float_tolerance):
            return "failed", index, f"test {index}: wrong answer: got {_first_line(result.get('stdout'), 120)!r}"
        session.passed = index + 1
    return "passed", len(spec["cases"]), ""


def _judge_calls(session: _Session, spec: dict, timeout: float) -> tuple[str, int, str]:
    function = _Candidate(session, spec["fn_name"], timeout)  # each case gets the timeout
    for index, (encoded_args, encoded_expected) in enumerate(spec["cases"]):
        try:
            args, expected = _decode(encoded_args), _decode(encoded_expected)
        except (TypeError, ValueError) as error:
            raise _TestError(f"test {index}: malformed arguments or expected value ({error})") from None
        try:
            got = function(*args)
        except _Abort:
            raise
        except Exception as error:
            return "failed", index, f"test {index}: raised {type(error).__name__}: {_first_line(error, 200)}"
        if isinstance(got, tuple):  # LiveCodeBench: tuples count as lists
            got = list(got)
        ok = got == expected
        if not ok and spec.get("compare") == "taco" and isinstance(expected, list) and expected:
            ok = got == expected[0]  # TACO wraps some expected values in a list
        if not ok:
            return "failed", index, f"test {index}: wrong answer: got {_first_line(repr(got), 120)}"
        session.passed = index + 1
    return "passed", len(spec["cases"]), ""


def _judge_check(session: _Session, spec: dict) -> tuple[str, int, str]:
    namespace: dict = {"__name__": "__check__"}
    try:
        exec(compile(spec.get("prelude", "") + "\n" + spec["test"], "<test>", "exec"), namespace)
        check = namespace["check"]
    except Exception as error:
        raise _TestError(f"the test code does not define check(): {type(error).__name__}: {error}") from None
    candidate = _Candidate(session, spec["entry_point"])
    # As in HumanEval's own harness (prompt + completion + test in one namespace), the test's
    # global of that name is the program's function (HumanEval/33 calls it by name).
    namespace[spec["entry_point"]] = candidate
    try:
        check(candidate)
    except _Abort:
        raise
    except AssertionError as error:
        return "failed", 0, f"assertion failed{': ' + _first_line(error, 200) if str(error) else ''}"
    except Exception as error:
        return "failed", 0, f"raised {type(error).__name__}: {_first_line(error, 200)}"
    return "passed", 1, ""


def _alarm(signum, frame):
    raise _Abort


def _supervise(config: dict) -> int:
    # 1. Fork the program's side first, before anything secret is read, so its memory holds
    #    nothing of the request; it keeps only its two pipes.
    command_r, command_w = os.pipe()
    reply_r, reply_w = os.pipe()
    runner_pid = os.fork()
    if runner_pid == 0:
        status = 1
        try:
            _close_all_but(0, 1, 2, command_r, reply_w)  # above all the request and the report pipe
            _become_program(config)
            status = _runner(command_r, reply_w, config)
        finally:
            os._exit(status)
    for fd in (command_r, reply_w):
        os.close(fd)

    # builtins, resource and decimal (outputs_match) were imported at the top, before the uid switch.

    # 2. The supervisor gives up root too: another uid than the program's, so neither can
    #    signal or trace the other; without uids (not root), a non-dumpable process cannot be
    #    traced or have its /proc/<pid>/fd opened by a same-uid process without capabilities.
    if config["uids"] is not None:
        uid = config["uids"][0]
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    else:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if config["uids"] is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))  # the supervisor forks nothing more

    # 3. Read the request (program, tests, nonce) from the file only the supervisor holds.
    if config.get("request_span") is None:
        with os.fdopen(config["request_fd"], "rb") as handle:
            request = json.loads(handle.read())
    else:  # batch mode: this program's slice of the batch's request file
        offset, length = config["request_span"]
        parts, have = [], 0
        while have < length:
            chunk = os.pread(config["request_fd"], length - have, offset + have)
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        os.close(config["request_fd"])
        request = json.loads(b"".join(parts))
    report_fd = config["report_fd"]
    nonce, mode, timeout = request["nonce"], request["mode"], float(request["timeout"])
    started = time.monotonic()
    report = {"mode": mode}
    max_frame = (config["limits"]["file_size_mb"] << 21) + (1 << 20)
    try:
        _write_frame(command_w, {"mode": mode, "source": request["source"]}, started + 30.0)
    except (TimeoutError, _PeerGone):
        pass  # the runner is gone (killed, or crashed on start): the wait below reports it
    if mode == "run":
        status = _wait_child(runner_pid, started + timeout)
        report.update(timed_out=status is None, returncode=None if status is None else os.waitstatus_to_exitcode(status))
    else:
        spec = request["tests"]
        deadline = started + float(request["total_timeout"])
        session = _Session(command_w, reply_r, deadline, max_frame)
        outcome: tuple[str, int, str]
        try:
            # Loading runs the program's top level in call/check modes: it spends the tests' time.
            load_deadline = started + 30.0 if spec["kind"] == "stdio" else deadline
            loaded = _read_frame(reply_r, load_deadline, max_frame)
            if not (isinstance(loaded, dict) and loaded.get("loaded") is True):
                error = loaded.get("error") if isinstance(loaded, dict) else None
                outcome = ("failed", 0, f"the program does not load: {_first_line(error or 'no reason given')}")
            elif spec["kind"] == "stdio":
                outcome = _judge_stdio(session, spec, timeout)
            else:
                signal.signal(signal.SIGALRM, _alarm)
                signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 0.001))
                try:
                    outcome = _judge_calls(session, spec, timeout) if spec["kind"] == "call" else _judge_check(session, spec)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
        except (_PeerGone, ValueError, UnicodeDecodeError):
            outcome = ("failed", 0, "the program's process ended before its tests ran")
        except TimeoutError:
            outcome = ("timeout", 0, "the program did not finish loading in time")
        except _Abort:
            failure = session.failure or "timeout"
            limit = f"{timeout:g}s per case" if spec["kind"] == "call" else f"{float(request['total_timeout']):g}s"
            outcome = (("timeout", session.passed, f"time limit exceeded ({limit})") if failure == "timeout"
                       else ("failed", session.passed, failure))
        except _TestError as error:
            outcome = ("test_error", 0, str(error))
        if session.failure and outcome[0] == "passed":  # e.g. a test swallowed our abort
            outcome = ("failed", 0, session.failure)
        report.update(status=outcome[0], passed=outcome[1], total=len(spec.get("cases", [None])), detail=outcome[2])
    report["seconds"] = round(time.monotonic() - started, 4)
    if config.get("report_index") is not None:  # batch mode: one atomic write on the shared pipe
        report["index"] = config["report_index"]
        report["nonce"] = nonce
        return 0 if _write_atomic_frame(report_fd, report) else 1
    report["nonce"] = nonce  # last: a report cut short carries no nonce
    try:
        _write_frame(report_fd, report, time.monotonic() + 10.0)
    except (TimeoutError, _PeerGone):
        return 1
    return 0


# =============================================================================================
# Inside the sandbox: batch mode (one sandbox, many programs judged one after the other)
#
# The batch's init (PID 1 of the pid namespace, `_supervise_batch`, or `_supervise_server` for
# a sandbox kept for many batches, which takes each batch from its socket and runs it the same
# way) holds no secret: it never reads a request file (the tests, the nonces), only passes its
# descriptor on. For each
# program it forks a fresh supervisor that runs `_supervise` exactly as a single judge() does
# (forks the program's side first, drops to its own uid, reads its slice of the request file,
# reports with its own nonce). When that supervisor has ended, the init restores the sandbox:
# it kills every other process of the namespace, empties /tmp, and checks that nothing is left
# (no process, no file in /tmp, /tmp's owner and mode unchanged, no SysV IPC object). If any
# check fails it stops, and the host judges the rest of the batch in a fresh sandbox.

_PIPE_BUF = 4096  # POSIX: a pipe write of at most this many bytes is atomic


def _write_atomic_frame(fd: int, obj) -> bool:
    """One frame in one write of at most PIPE_BUF bytes, so frames of several writers on one
    pipe never interleave and a writer killed mid-way leaves nothing partial."""
    obj = dict(obj)
    while True:
        body = json.dumps(obj, separators=(",", ":")).encode()
        data = _HEADER.pack(len(body)) + body
        if len(data) <= _PIPE_BUF:
            break
        detail = str(obj.get("detail", ""))
        if not detail:
            return False
        obj["detail"] = detail[: len(detail) // 2]
    os.set_blocking(fd, True)
    try:
        return os.write(fd, data) == len(data)
    except OSError:
        return False


def _empty_directory(dir_fd: int, depth: int = 0) -> None:
    """Remove everything below an open directory without following symbolic links."""
    if depth > 100:
        raise OSError("directory tree too deep")
    for entry in list(os.scandir(dir_fd)):
        name = entry.name
        if entry.is_dir(follow_symlinks=False):
            try:
                os.chmod(name, 0o700, dir_fd=dir_fd)  # a program may have made it unreadable
            except OSError:
                pass
            sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
            try:
                _empty_directory(sub, depth + 1)
            finally:
                os.close(sub)
            os.rmdir(name, dir_fd=dir_fd)
        else:
            os.unlink(name, dir_fd=dir_fd)


def _reap_all() -> bool:
    """Reap every child that has ended; True when no child is left at all."""
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return False
        except ChildProcessError:
            return True


def _restore_sandbox(tmp_state: tuple) -> str:
    """Kill every process of the namespace but ourselves, empty /tmp, check; '' when clean."""
    deadline = time.monotonic() + 5.0
    while True:
        try:
            os.kill(-1, signal.SIGKILL)  # from the namespace's init: every process in it but init
        except ProcessLookupError:
            pass
        except PermissionError:
            return "cannot signal the program's processes"
        if _reap_all():
            break
        if time.monotonic() > deadline:
            return "processes survived SIGKILL"
        signal.sigtimedwait([signal.SIGCHLD], 0.02)
    others = [entry for entry in os.listdir("/proc") if entry.isdigit() and entry != str(os.getpid())]
    if others:
        return f"processes left: {others[:5]}"
    try:
        tmp_fd = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            _empty_directory(tmp_fd)
        finally:
            os.close(tmp_fd)
    except (OSError, RecursionError) as error:
        return f"cannot empty /tmp: {type(error).__name__}: {error}"
    info = os.stat("/tmp", follow_symlinks=False)
    if os.listdir("/tmp") or (info.st_mode, info.st_uid, info.st_gid) != tmp_state:
        return "/tmp is not back to its initial state"
    for kind in ("shm", "sem", "msg"):
        try:
            with open(f"/proc/sysvipc/{kind}") as handle:
                if len(handle.read().strip().splitlines()) > 1:
                    return f"a SysV IPC object ({kind}) is left"
        except FileNotFoundError:
            pass
    return ""


def _batch_prologue(root: bool) -> tuple:
    """What the init does once, before its first program: /tmp's initial state, SIGCHLD blocked."""
    if not root:
        # Not root: every process has our uid; without this a program could open /proc/1/fd/N
        # and read the request file of the whole batch.
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
        for name in [name for name in sys.modules if name == "ctypes" or name.startswith("ctypes.")]:
            del sys.modules[name]  # each program's process starts with the modules of a single judge()
    info = os.stat("/tmp", follow_symlinks=False)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
    return (info.st_mode, info.st_uid, info.st_gid)


def _run_batch(config: dict, tmp_state: tuple, also_close: tuple = ()) -> int:
    """Judge `config["items"]` one after the other: 0 when done, 1 when the report pipe broke,
    3 when the sandbox could not be restored after a program (the host starts a fresh one).
    `also_close`: descriptors of the init that a program's supervisor must not keep."""
    report_fd = config["report_fd"]
    output_fds = {fd for item in config["items"] for fd in (item["stdout_fd"], item["stderr_fd"])}
    for item in config["items"]:
        index = item["index"]
        if not _write_atomic_frame(report_fd, {"event": "started", "index": index}):
            return 1
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:  # this program's supervisor: as in a single judge() from here on
            status = 1
            try:
                signal.pthread_sigmask(signal.SIG_SETMASK, [])
                os.dup2(item["stdout_fd"], 1)
                os.dup2(item["stderr_fd"], 2)
                for fd in (*output_fds, *also_close):
                    os.close(fd)
                status = _supervise({"request_fd": config["request_fd"], "report_fd": report_fd, "uids": item["uids"],
                                     "mode": item["mode"], "limits": config["limits"], "cpu_seconds": item["cpu_seconds"],
                                     "request_span": item["span"], "report_index": index})
            finally:
                os._exit(status)
        deadline = started + float(item["backstop"])
        supervisor_status = None
        while supervisor_status is None:  # wait for it, reaping the orphans that come to us
            try:
                while True:
                    done, status = os.waitpid(-1, os.WNOHANG)
                    if done == 0:
                        break
                    if done == pid:
                        supervisor_status = status
                        break
            except ChildProcessError:
                break
            remaining = deadline - time.monotonic()
            if supervisor_status is None:
                if remaining <= 0:
                    break  # past its backstop: the restore below kills it
                signal.sigtimedwait([signal.SIGCHLD], min(remaining, 1.0))
        problem = _restore_sandbox(tmp_state)
        for fd in (item["stdout_fd"], item["stderr_fd"]):
            os.close(fd)
            output_fds.discard(fd)
        _write_atomic_frame(report_fd, {"event": "done", "index": index, "backstop": supervisor_status is None,
                                        "seconds": round(time.monotonic() - started, 4), "unhealthy": problem})
        if problem:
            return 3
    return 0


def _supervise_batch(config: dict) -> int:
    return _run_batch(config, _batch_prologue(any(item["uids"] is not None for item in config["items"])))


def _supervise_server(config: dict) -> int:
    """The init of a batch sandbox kept for many batches (the host's `_Server`). Each batch comes
    as one message on the control socket: the batch's config (as `--supervise-batch` gets it,
    with positions in the message's descriptors where that has descriptor numbers) and the
    descriptors themselves: the request file, the report pipe, a pipe for the init's own stderr
    and each program's stdout and stderr. The init judges the batch exactly as `_run_batch`
    does, closes the batch's descriptors and waits for the next; it ends when the host closes
    the socket, and after a program it could not clean up after (the host then starts a fresh
    sandbox). Between two batches, as between two programs, nothing of a program is left."""
    before = set(sys.modules)
    import socket

    control, recv_fds = socket.socket(fileno=config["control_fd"]), socket.recv_fds
    for name in set(sys.modules) - before:
        del sys.modules[name]  # each program's process starts with the modules of a single judge()
    del socket
    saved_stderr = os.dup(2)
    tmp_state = _batch_prologue(config["root"])
    while True:
        try:
            message, fds, _, _ = recv_fds(control, 1 << 22, 255)
        except OSError:
            return 1
        if not message:
            return 0  # the host is done with this sandbox
        try:
            batch = json.loads(message)
            request_fd, report_fd, stderr_fd = (fds[i] for i in batch["fds"])
            items = [dict(item, stdout_fd=fds[item["stdout_fd"]], stderr_fd=fds[item["stderr_fd"]]) for item in batch["items"]]
        except (ValueError, KeyError, IndexError, TypeError):
            return 2  # not from our host: stop
        os.dup2(stderr_fd, 2)
        status = _run_batch({"request_fd": request_fd, "report_fd": report_fd, "limits": config["limits"], "items": items},
                            tmp_state, also_close=(control.fileno(), saved_stderr, stderr_fd))
        os.dup2(saved_stderr, 2)
        if status:
            return status  # exiting closes the rest
        for fd in (request_fd, report_fd, stderr_fd):  # each program's pipes were closed after it
            os.close(fd)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--supervise":
    sys.exit(_supervise(json.loads(sys.argv[2])))
if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--supervise-batch":
    sys.exit(_supervise_batch(json.loads(sys.argv[2])))
if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--supervise-server":
    sys.exit(_supervise_server(json.loads(sys.argv[2])))
