"""Claims on cells, so that several runs sharing one output folder (on one machine, or many on a shared filesystem)
never compute a cell twice at once, and a cell whose run died is taken over by another.

A claim is a file `<out>/claims/<suite>/<method>/<cell>.claim`, created with O_CREAT|O_EXCL (only one run can create
it) and holding the holder's host, pid, process start and claim time. A thread touches it while the cell runs (the
heartbeat); the holder removes it once the cell is written or has failed. A claim is stale, and is taken over, when its
holder is a dead process on this host, or when its heartbeat is older than the timeout (a holder on another host, or
one that hangs). Taking over is serialised by a short-lived `.claim.break` file, so that two runs that both find a
claim stale cannot both take it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)
CLAIM_TIMEOUT_SECONDS = 3600.0  # far above the heartbeat: a claim this old has a holder that hangs or lost its host
HEARTBEAT_SECONDS = 60.0
BREAK_SECONDS = 60.0  # taking a claim over takes milliseconds; a `.claim.break` file this old was left by a killed run


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: `process_start` (the kernel's start tick of `pid`) tells the holder from a later process
    that was given the same pid."""

    host: str
    pid: int
    process_start: str
    claimed_at: float

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.claimed_at))
        return f"pid {self.pid} on {self.host} since {since}"


def process_start(pid: int) -> str | None:
    """The start tick of a live process `pid` ('' on a system without /proc); None: no such process, or a zombie
    (killed and not yet reaped)."""
    if not Path("/proc/self/stat").is_file():
        return _exists_without_proc(pid)
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]  # the fields after the name: state, ppid, ..., starttime (22nd)


def _exists_without_proc(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # another user's process: alive
        pass
    return ""


def this_process() -> Holder:
    return Holder(socket.gethostname(), os.getpid(), process_start(os.getpid()) or "", time.time())


def read_holder(path: Path) -> Holder | None:
    """The holder a claim file names; None while its creator has not written it yet, or if it is not a claim."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        fields = (str(record["host"]), int(record["pid"]), str(record["process_start"]), float(record["claimed_at"]))
        return Holder(*fields)
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def holder_is_dead(holder: Holder) -> bool:
    """Only a holder on this host can be seen dead; one elsewhere is judged by its heartbeat alone."""
    if holder.host != socket.gethostname():
        return False
    started = process_start(holder.pid)
    return started is None or bool(started and holder.process_start and started != holder.process_start)


def stale_reason(path: Path, timeout: float) -> str | None:
    """Why the claim at `path` may be taken over (its holder died, no heartbeat within `timeout`, it is gone); None
    while its holder is alive."""
    try:
        heartbeat = path.stat().st_mtime
    except FileNotFoundError:
        return "it was released"
    holder = read_holder(path)
    if holder is not None and holder_is_dead(holder):
        return f"its holder, pid {holder.pid} on {holder.host}, is dead"
    if (age := time.time() - heartbeat) > timeout:
        return f"its heartbeat is {age:.0f} s old (over the claim timeout of {timeout:.0f} s)"
    return None


def _create(path: Path, holder: Holder) -> int | None:
    """The open claim file, created here and now; None if it exists already."""
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    os.write(descriptor, json.dumps(asdict(holder), sort_keys=True).encode())
    os.fsync(descriptor)
    return descriptor


class Claim:
    """A claim this process holds: its heartbeat runs until `release()`."""

    def __init__(self, path: Path, descriptor: int, heartbeat_seconds: float):
        self.path, self._descriptor, self._stopped = path, descriptor, threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_seconds,), daemon=True)
        self._thread.start()

    def _beat(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            os.utime(self._descriptor)  # through the descriptor: a claim taken over by another run is not refreshed

    def release(self) -> None:
        """Stop the heartbeat and remove the claim file, unless another run has taken it over meanwhile."""
        self._stopped.set()
        self._thread.join()
        try:
            if os.stat(self.path).st_ino == os.fstat(self._descriptor).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(self._descriptor)


class CellClaims:
    """One run's claims on cells: a claim older than `timeout` seconds since its last heartbeat is stale."""

    def __init__(self, timeout: float = CLAIM_TIMEOUT_SECONDS, heartbeat: float = HEARTBEAT_SECONDS):
        self.timeout, self.heartbeat = timeout, min(heartbeat, timeout / 4)
        self.taken_over: list[str] = []  # what this run took over from runs that died, for its summary

    def acquire(self, path: Path) -> Claim | None:
        """Claim the cell whose claim file is `path`; None while a live run holds it. A stale claim is taken over."""
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = _create(path, this_process())
        if descriptor is None and self._break(path):
            descriptor = _create(path, this_process())  # still refused if another run claimed it just now
        return None if descriptor is None else Claim(path, descriptor, self.heartbeat)

    def holder(self, path: Path) -> str:
        """Who holds the claim at `path`, in words (for the cells a run leaves to another)."""
        holder = read_holder(path)
        return holder.describe() if holder else "a run that is starting it"

    def _break(self, path: Path) -> bool:
        """Remove the claim at `path` if it is stale; True if it is gone. One run at a time breaks a given claim."""
        with break_lock(path.with_name(path.name + ".break")) as held:
            if not held or (reason := stale_reason(path, self.timeout)) is None:
                return False
            holder = read_holder(path)
            try:
                path.unlink()
            except FileNotFoundError:  # released meanwhile
                return True
            message = f"{path}: took over the claim of {holder.describe() if holder else 'a run that died'}: {reason}"
            log.warning(message)
            self.taken_over.append(message)
        return True


@contextlib.contextmanager
def break_lock(path: Path):
    """Hold `path`, created exclusively, for the block (yields False when another run holds it). One left behind by a
    run killed while breaking a claim is removed once older than BREAK_SECONDS."""
    with contextlib.suppress(FileNotFoundError):
        if time.time() - path.stat().st_mtime > BREAK_SECONDS:
            path.unlink()
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        yield False
        return
    try:
        yield True
    finally:
        os.close(descriptor)
        path.unlink(missing_ok=True)
