"""Inside the sandbox: the program's side (the "runner"). Mounted read-only in the sandbox
beside scope_lib/grading/sandbox_inside_supervisor.py, which forks it; imports only the standard library.

The runner drops to the program's uid and resource limits, receives the program from the
supervisor, and runs it: as `__main__` on the sandbox's own stdin/stdout (`run`), once per test
case in a fresh fork with memory files for stdin and output (`stdio`), or loaded once as a module
whose functions the supervisor calls (`call`, HumanEval's `check` included). It never sees the
tests' expected outputs, the nonce or the report pipe.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

if __package__:  # imported on the host, as part of the package
    from .sandbox_wire import _PeerGone, _decode, _encode, _read_frame, _write_frame
else:  # inside the sandbox: run from the files mounted beside each other in /sandbox
    from sandbox_wire import _PeerGone, _decode, _encode, _read_frame, _write_frame

PROGRAM_FILENAME = "program.py"  # what tracebacks of the sandboxed program call it



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
    # site is skipped (-S) for a fast start; programs still expect exit() and quit().
    import _sitebuiltins
    import builtins

    module.__builtins__ = builtins  # the module, as a script's __main__ has it

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

