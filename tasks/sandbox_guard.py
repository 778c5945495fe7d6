"""The Python guard of `tasks.sandbox_child`: clear errors for well-meaning code that starts processes, opens
sockets, changes files outside its working directory or reads site and project folders, and an importer for the
allowed packages alone. `socket`, `subprocess` and `shutil` are guarded as guarded code first imports them, not
imported to be guarded (`GuardOnImport`): a process that never uses them is spared about 10 ms of imports. Containment
proper is below Python (`tasks.sandbox_child.enter_private_root`); ctypes, `posix`, `_io` or `_socket` get around the
guard.
"""

from __future__ import annotations

import _io
import builtins
import collections
import functools
import importlib.util
import io
import os
import sys
import types
from collections.abc import Callable

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


class AllowedPackages:
    """An importer for the allowed third-party packages (`tasks.sandbox.ALLOWED_PACKAGES`) alone: their site folders
    are not on `sys.path`."""

    def __init__(self, packages: dict[str, dict]) -> None:
        self.packages = packages

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        package = self.packages.get(name)
        if package is None:
            return None
        return importlib.util.spec_from_file_location(
            name, package["origin"], submodule_search_locations=package["locations"]
        )


class Reach(collections.namedtuple("Reach", ("root", "hidden", "shown"))):
    """What guarded code may open: for writing, files inside `root` (str); for reading, anything but the `hidden`
    folders (site and project folders), of which `root` and the allowed packages' `shown` paths are exempt. A named
    tuple, not a dataclass: every sandboxed process imports this module, and `dataclasses` costs it 10 ms."""

    __slots__ = ()

    def refuse_opening(self, path: str | bytes | os.PathLike, writing: bool, dir_fd: int | None = None) -> None:
        """Raise PermissionError if guarded code may not open `path` (for writing if `writing`)."""
        resolved = resolved_path(path, dir_fd)
        if within(resolved, self.root):
            return
        if writing:
            raise PermissionError(f"sandbox: writing outside the working directory is refused: {path!r}")
        hidden = any(within(resolved, folder) for folder in self.hidden)
        if hidden and not any(within(resolved, path) for path in self.shown):
            raise PermissionError(f"sandbox: reading site or project folders is refused: {path!r}")


def install_guard(reach: Reach) -> None:
    """Disable new processes, signals and sockets, refuse file changes outside `reach.root` and opening hidden files
    (imports too), for code run afterwards."""
    for name in PROCESS_FUNCTIONS:
        refuse(os, name)
    for name in PATH_FUNCTIONS:
        confine(os, name, reach.root)
    builtins.open = io.open = confined_open(builtins.open, reach)
    os.open = confined_os_open(os.open, reach)
    io.open_code = _io.open_code = confined_open_code(_io.open_code, reach)  # what imports read source files with
    for name in BLOCKED_MODULES:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    guards = {"socket": guard_socket, "subprocess": guard_subprocess,
              "shutil": functools.partial(guard_shutil, root=reach.root)}  # fmt: skip
    for name, guard in guards.items():
        if name in sys.modules:
            guard(sys.modules[name])
    sys.meta_path.insert(0, GuardOnImport({name: guard for name, guard in guards.items() if name not in sys.modules}))


def guard_socket(socket: types.ModuleType) -> None:
    """No sockets: `socket.socket` refuses to make one; `socketpair` and `fromfd` are disabled."""
    refuse(socket, "socketpair")
    refuse(socket, "fromfd")

    class RefusedSocket(socket.socket):
        """Stands in for `socket.socket`; a subclass (not a function) so stdlib modules that subclass it import."""

        def __init__(self, *args: object, **kwargs: object) -> None:
            raise PermissionError("sandbox: network sockets are disabled")

    socket.socket = RefusedSocket


def guard_subprocess(subprocess: types.ModuleType) -> None:
    """No new processes through `subprocess`."""
    refuse(subprocess, "Popen")


def guard_shutil(shutil: types.ModuleType, root: str) -> None:
    """`shutil`'s removing, moving, copying and ownership changes only within `root`."""
    for name in ("rmtree", "move", "copytree", "chown"):
        confine(shutil, name, root)


class GuardOnImport:
    """A finder that guards the modules in `guards` (name -> function that patches the module) as they are first
    imported, so a sandboxed process that never imports them does not pay for importing them (about 10 ms a
    process, two processes an item). It finds each through the other finders and runs its guard after its code."""

    def __init__(self, guards: dict[str, Callable[[types.ModuleType], None]]) -> None:
        self.guards = guards

    def find_spec(self, name: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        guard = self.guards.get(name)
        if guard is None:
            return None
        for finder in sys.meta_path:
            spec = None if finder is self else finder.find_spec(name, path, target)
            if spec is not None:
                spec.loader = GuardingLoader(spec.loader, guard)
                return spec
        return None


class GuardingLoader:
    """Runs a module's own loader, then its guard."""

    def __init__(self, loader: object, guard: Callable[[types.ModuleType], None]) -> None:
        self.loader, self.guard = loader, guard

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self.loader.exec_module(module)
        self.guard(module)


def refuse(module: types.ModuleType, name: str) -> None:
    """Replace `module.name` by a function that raises PermissionError naming it."""
    if not hasattr(module, name):
        return

    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(f"sandbox: {module.__name__}.{name} is disabled")

    setattr(module, name, refused)


def resolved_path(path: str | bytes | os.PathLike, dir_fd: int | None = None) -> str:
    """`path` made absolute (relative to `dir_fd` if given) and resolved through symlinks."""
    path = os.fsdecode(path)
    if dir_fd is not None and not os.path.isabs(path):
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    return os.path.realpath(path)


def within(resolved: str, folder: str) -> bool:
    """Whether the resolved path `resolved` is `folder` or lies inside it."""
    return resolved == folder or resolved.startswith(folder.rstrip(os.sep) + os.sep)


def inside(root: str, path: str | bytes | os.PathLike, dir_fd: int | None = None) -> bool:
    """Whether `path` (resolved through symlinks, and relative to `dir_fd` if given) lies within `root`."""
    return within(resolved_path(path, dir_fd), root)


def confine(module: types.ModuleType, name: str, root: str) -> None:
    """Wrap `module.name` so that it refuses path arguments outside `root`."""
    original = getattr(module, name, None)
    if original is None:
        return

    def confined(*args: object, **kwargs: object) -> object:
        paths = [*args[:2], kwargs.get("path"), kwargs.get("src"), kwargs.get("dst")]
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)) and not inside(root, path, kwargs.get("dir_fd")):
                raise PermissionError(f"sandbox: {module.__name__}.{name} outside the working directory: {path!r}")
        return original(*args, **kwargs)

    setattr(module, name, confined)


def confined_open(original: Callable[..., object], reach: Reach) -> Callable[..., object]:
    """`open` that writes only inside `reach.root` and reads no hidden file."""

    def open_within_reach(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if not isinstance(file, int):
            reach.refuse_opening(file, writing=bool(set(mode) & set("wax+")))
        return original(file, mode, *args, **kwargs)

    return open_within_reach


def confined_os_open(original: Callable[..., int], reach: Reach) -> Callable[..., int]:
    """`os.open` that opens for writing only inside `reach.root`, and no hidden file at all."""

    def os_open_within_reach(path: object, flags: int, *args: object, dir_fd: int | None = None, **kwargs: object) -> int:
        reach.refuse_opening(path, writing=bool(flags & WRITE_FLAGS), dir_fd=dir_fd)
        return original(path, flags, *args, dir_fd=dir_fd, **kwargs)

    return os_open_within_reach


def confined_open_code(original: Callable[..., object], reach: Reach) -> Callable[..., object]:
    """`io.open_code`, which imports read modules with, refusing hidden files."""

    def open_code_within_reach(path: str) -> object:
        reach.refuse_opening(path, writing=False)
        return original(path)

    return open_code_within_reach
