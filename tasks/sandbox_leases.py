"""What a sandbox holds on the machine while it lives, held so that nothing else takes it, and the sweep of what a
dead scorer left behind.

- Its scratch folder, `sandbox-*` in the temporary folder: the scorer holds an flock on its `owner.lock` (the kernel
  drops it when the scorer dies, however it dies). The first sandbox of each process sweeps the folders whose lock
  is free, ending and removing the cgroups recorded in each (`tasks.sandbox_cgroups`) before the folder.
- Its uid (the "namespaces" containment): drawn at random, taken only if no process on the machine has it as any of
  its uids or gids, and held through an abstract Unix socket named after it, which a second bind cannot take and
  the kernel frees when its holder dies; so no other sandbox draws it while it lives, and ending its processes by
  uid ends no one else's.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tasks.sandbox_cgroups import recorded_cgroups, remove_cgroup, sweep_empty_cgroups

logger = logging.getLogger(__name__)

SCRATCH_PREFIX = "sandbox-"
OWNER_LOCK = "owner.lock"
# A uid far above any account's, so RLIMIT_NPROC counts that sandbox's processes alone.
FIRST_SANDBOX_UID = 2**24
UID_LEASE_NAME = "\0lora-compose-bench/sandbox-uid/{uid}"  # abstract: no file, freed with its holder


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A fresh folder for one sandboxed run, held by this process until it is removed on leaving; stale folders of
    dead scorers are swept first (once per temporary folder and process). An OSError making it is raised (a full or
    missing temporary folder is no item's fault); one removing it, which the run's own processes may cause, is
    logged."""
    sweep_stale_folders_once(tempfile.gettempdir())
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX))
    lock = hold(scratch)
    try:
        yield scratch
    finally:
        remove_scratch(scratch)
        os.close(lock)


@functools.cache
def sweep_stale_folders_once(temporary: str) -> None:
    """`sweep_stale_folders` (and `sweep_empty_cgroups`) at this process's first sandbox in the temporary folder
    `temporary`."""
    sweep_stale_folders(Path(temporary))
    sweep_empty_cgroups()


def hold(scratch: Path) -> int:
    """Lock `scratch`'s owner file, made under another name and renamed once locked, so no sweep can find it free."""
    making = scratch / f"{OWNER_LOCK}.new"
    lock = os.open(making, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.rename(making, scratch / OWNER_LOCK)
    return lock


def remove_scratch(scratch: Path) -> None:
    """End and remove the cgroups recorded in `scratch`, then the folder; what cannot be removed is logged."""
    for cgroup in recorded_cgroups(scratch):
        remove_cgroup(cgroup)

    def report(function, path: str, error: tuple) -> None:
        if not isinstance(error[1], FileNotFoundError):  # a sweep in another process may be removing it too
            logger.warning("sandbox scratch folder %s: %s failed on %s: %s", scratch, function.__name__, path, error[1])

    shutil.rmtree(scratch, onerror=report)


def sweep_stale_folders(temporary: Path) -> None:
    """Remove the scratch folders in `temporary` (ours: owned by us, with an owner lock) whose owner is dead."""
    try:
        entries = [entry for entry in os.scandir(temporary) if entry.name.startswith(SCRATCH_PREFIX)]
    except OSError:
        return  # making the scratch folder will say what is wrong with the temporary folder
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
            lock = os.open(Path(entry.path, OWNER_LOCK), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # no owner lock: not a sandbox's folder, or one being made
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            continue  # its scorer lives
        logger.info("removing sandbox folder %s, left by a scorer that died", entry.path)
        try:
            remove_scratch(Path(entry.path))
        finally:
            os.close(lock)


def lease_uid() -> tuple[int, socket.socket]:
    """A uid for one sandbox and the socket that holds it until closed (module docstring)."""
    while True:
        uid = FIRST_SANDBOX_UID + secrets.randbelow(2**30 - FIRST_SANDBOX_UID)
        lease = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            lease.bind(UID_LEASE_NAME.format(uid=uid))
        except OSError:  # EADDRINUSE: another sandbox holds it
            lease.close()
            continue
        if not processes_of(uid):
            return uid, lease
        lease.close()


def processes_of(uid: int) -> list[int]:
    """The pids of the processes that have `uid` as any of their uids or gids (real, effective, saved, file system)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="utf-8") as status:
                ids = [line.split()[1:] for line in status if line.startswith(("Uid:", "Gid:"))]
        except OSError:
            continue  # gone meanwhile
        if str(uid) in (value for values in ids for value in values):
            pids.append(int(entry))
    return pids
