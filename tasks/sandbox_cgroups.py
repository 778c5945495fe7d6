"""Caps for a whole sandbox: a cgroup per sandboxed process tree, so its memory (memory-backed files and tmpfs pages
included) and its process count are bounded for all its processes together, not per process.

`cgroup_hierarchies()` finds, once per process, where this process may make cgroups below its own (so the
sandbox's stay inside whatever bounds the scorer), trying each in turn:

- cgroup v2, where this process's own cgroup already delegates `memory` to its children (its
  `cgroup.subtree_control` lists it; `pids` too where listed): `memory.max`, `memory.swap.max` 0, `pids.max`. v2
  lets only the root cgroup hold processes and delegate at once, so in practice this needs a scorer in the root
  cgroup; a scorer in a systemd unit or a container's own cgroup gets the next choice.
- cgroup v1, the mounted `memory` hierarchy (`memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` where swap
  is accounted) and the `pids` hierarchy (`pids.max`), each where mounted and writable.

A hierarchy counts only if a probe cgroup can be made, capped, joined and removed. Where none holds `memory`,
memory is capped per process only (`tasks.sandbox` says what that bounds). Each cgroup is named after the
sandbox's scratch folder and recorded in it (`CGROUPS_RECORD`) before it is made, so a sweep that finds the folder
of a dead scorer also ends and removes its cgroups (`tasks.sandbox_leases`).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

CGROUPS_RECORD = "cgroups"
# The files that cap each controller, and which value each gets; v1 counts swap in memsw, v2 apart (held at 0).
CAPS = {
    (1, "memory"): (("memory.limit_in_bytes", "memory"), ("memory.memsw.limit_in_bytes", "memory")),
    (2, "memory"): (("memory.max", "memory"), ("memory.swap.max", "swap")),
    (1, "pids"): (("pids.max", "processes"),),
    (2, "pids"): (("pids.max", "processes"),),
}
OPTIONAL_CAPS = ("memory.memsw.limit_in_bytes", "memory.swap.max")


@dataclass(frozen=True)
class CgroupHierarchy:
    """Where sandbox cgroups are made (`parent`, this process's own cgroup there) and which caps they get."""

    version: int  # 1 or 2
    controllers: tuple[str, ...]  # of "memory", "pids"
    parent: Path


def cgroup_mounts() -> list[tuple[str, str, str, set[str]]]:
    """This process's cgroup mounts: (file system type, mount point, root inside the hierarchy, super options)."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, tail = line.partition(" - ")
        fstype, _, options = (tail.split() + ["", "", ""])[:3]
        if fstype in ("cgroup", "cgroup2"):
            root, mount_point = fields.split()[3:5]
            mounts.append((fstype, mount_point.replace("\\040", " "), root, set(options.split(","))))
    return mounts


def own_cgroup(mount_point: str, root: str, path: str) -> Path | None:
    """Where this process's cgroup `path` appears under a mount of its hierarchy whose root is `root`."""
    relative = os.path.relpath(path, root)
    return None if relative.startswith("..") else Path(mount_point, relative).resolve()


def candidate_hierarchies() -> list[CgroupHierarchy]:
    """The hierarchies to try, first choice first: v2 where `memory` is delegated, else the v1 controllers."""
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else ["(v2)"]:
            paths[controller] = path
    mounts = cgroup_mounts()
    for fstype, mount_point, root, _ in mounts:
        parent = own_cgroup(mount_point, root, paths.get("(v2)", "")) if fstype == "cgroup2" else None
        if parent is not None and (parent / "cgroup.subtree_control").exists():
            delegated = set((parent / "cgroup.subtree_control").read_text().split())
            if "memory" in delegated:
                return [CgroupHierarchy(2, tuple(sorted({"memory", "pids"} & delegated)), parent)]
    found: dict[Path, tuple[str, ...]] = {}  # one entry for controllers mounted together
    for controller in ("memory", "pids"):
        for fstype, mount_point, root, options in mounts:
            if fstype == "cgroup" and controller in options and controller in paths:
                if (parent := own_cgroup(mount_point, root, paths[controller])) is not None:
                    found[parent] = (*found.get(parent, ()), controller)
                    break
    return [CgroupHierarchy(1, controllers, parent) for parent, controllers in found.items()]


@functools.cache
def cgroup_hierarchies() -> tuple[CgroupHierarchy, ...]:
    """The hierarchies where this process can make, cap, join and remove a cgroup (module docstring)."""
    try:
        candidates = candidate_hierarchies()
    except OSError as error:  # no /proc/self/cgroup (not Linux, or /proc not mounted)
        logger.warning("sandbox memory is capped per process only: %s", error)
        return ()
    usable = tuple(hierarchy for hierarchy in candidates if probe_hierarchy(hierarchy))
    if not any("memory" in hierarchy.controllers for hierarchy in usable):
        logger.warning("no writable cgroup with the memory controller: sandbox memory is capped per process only")
    return usable


def probe_hierarchy(hierarchy: CgroupHierarchy) -> bool:
    """Whether a capped cgroup can be made here, a process moved into it, and the cgroup removed."""
    probe = hierarchy.parent / f"sandbox-probe-{secrets.token_hex(8)}"
    try:
        make_cgroup(hierarchy, probe, 64 * 2**20, 4)
        joined = subprocess.run(["/bin/sh", "-c", 'echo $$ > "$1"', "sh", str(probe / "cgroup.procs")],
                                capture_output=True, timeout=10)  # fmt: skip
        return remove_cgroup(probe) and joined.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as error:
        remove_cgroup(probe, timeout_s=1)
        logger.info("cgroup v%d at %s is not usable for sandboxes: %s", hierarchy.version, hierarchy.parent, error)
        return False


def memory_capped_by() -> str:
    """"cgroup-v2" or "cgroup-v1" where a sandbox's memory is capped for all its processes together, else
    "per-process" (RLIMIT_AS alone)."""
    versions = [hierarchy.version for hierarchy in cgroup_hierarchies() if "memory" in hierarchy.controllers]
    return f"cgroup-v{versions[0]}" if versions else "per-process"


def make_cgroup(hierarchy: CgroupHierarchy, path: Path, memory_bytes: int, max_processes: int) -> None:
    """Make the cgroup `path` with the hierarchy's caps, before any process joins it."""
    values = {"memory": memory_bytes, "swap": 0, "processes": max_processes}
    path.mkdir()
    try:
        for controller in hierarchy.controllers:
            for name, value in CAPS[hierarchy.version, controller]:
                if name in OPTIONAL_CAPS and not (path / name).exists():  # swap is not accounted on this kernel
                    continue
                (path / name).write_text(str(values[value]))
    except OSError:
        path.rmdir()
        raise


def make_sandbox_cgroups(scratch: Path, name: str, memory_bytes: int, max_processes: int) -> tuple[Path, ...]:
    """The cgroups for the sandboxed process `name` of the run in `scratch`, one per usable hierarchy, each
    recorded in `scratch` before it is made. The child moves itself into them (`tasks.sandbox_child`)."""
    paths = []
    for hierarchy in cgroup_hierarchies():
        path = hierarchy.parent / f"{scratch.name}.{name}"
        with open(scratch / CGROUPS_RECORD, "a", encoding="utf-8") as record:
            record.write(f"{path}\n")
        make_cgroup(hierarchy, path, memory_bytes, max_processes)
        paths.append(path)
    return tuple(paths)


def recorded_cgroups(scratch: Path) -> list[Path]:
    """The cgroups recorded in `scratch`: only paths on a cgroup mount named after `scratch` (a sandboxed process
    that can write there must not make a sweep end someone else's cgroup)."""
    try:
        lines = (scratch / CGROUPS_RECORD).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    mount_points = [Path(mount[1]) for mount in cgroup_mounts()]
    paths = [Path(os.path.normpath(line)) for line in lines if line.startswith("/") and "\0" not in line]
    return [path for path in paths if path.name.startswith(f"{scratch.name}.") and
            any(mount in path.parents for mount in mount_points)]  # fmt: skip


def sweep_empty_cgroups(min_age_s: float = 60.0) -> None:
    """Remove the sandbox cgroups below this process's own that no process is in and that were made more than
    `min_age_s` ago (a live sandbox's child joins its cgroup within moments): left where removal timed out."""
    for hierarchy in cgroup_hierarchies():
        for path in hierarchy.parent.glob("sandbox-*"):
            try:
                if not (path / "cgroup.procs").read_text().split() and time.time() - path.stat().st_mtime > min_age_s:
                    path.rmdir()
            except OSError:
                pass  # joined or removed meanwhile


def remove_cgroup(path: Path, timeout_s: float = 5.0) -> bool:
    """SIGKILL every process in the cgroup `path` until none is left, then remove it; False (and a warning) if
    that did not happen within `timeout_s`. A cgroup already gone counts as removed."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if (path / "cgroup.kill").exists():
                (path / "cgroup.kill").write_text("1")  # v2: the kernel ends them all, forks in flight included
            pids = [int(pid) for pid in (path / "cgroup.procs").read_text().split()]
            for pid in pids:
                kill(pid)
            if not pids:
                path.rmdir()
                return True
        except FileNotFoundError:
            return True
        except OSError as error:  # EBUSY: a killed process has not left yet
            problem = error
        else:
            problem = f"{len(pids)} processes still in it"
        if time.monotonic() > deadline:
            logger.warning("sandbox cgroup %s is left behind: %s", path, problem)
            return False
        time.sleep(0.005)


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
