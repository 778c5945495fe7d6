"""The child side of `tasks.sandbox`: run as `python -m tasks.sandbox_child` with its request as JSON on stdin.

It joins the cgroups the parent made for it (`tasks.sandbox_cgroups`), caps its own resources, contains itself
(`enter_private_root`, when the parent started it in fresh mount, pid, network and IPC namespaces as root), installs
the Python guard (`tasks.sandbox_guard`), then runs in one of three modes: "run" executes a
program; "serve" executes a solution, then answers calls to its functions over a pair of pipes; "check" executes a
checker (trusted context and tests) whose named functions are proxies for the serving process's, so a completion's
code never runs in the process that compares its results (see `tasks.plain_data`).
"""

from __future__ import annotations

import builtins
import ctypes
import json
import linecache
import os
import resource
import signal
import sys
import traceback
import types
from collections.abc import Callable

from tasks.plain_data import decode, encode, read_message, write_message
from tasks.sandbox_guard import AllowedPackages, Reach, install_guard

# What the private root shows, read-only: the system's programs and libraries, and this interpreter's import path
# (the standard library: the parent starts it without `site`), with the site folders inside them emptied.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
# mount(2) flags, from <sys/mount.h>.
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38


def main() -> None:
    """Read the request, contain and cap this process, then run the request's mode."""
    request = json.loads(sys.stdin.buffer.read())
    for cgroup in request["cgroups"]:  # first, so the sandbox's caps hold for all it runs
        with open(os.path.join(cgroup, "cgroup.procs"), "w") as procs:
            procs.write(str(os.getpid()))
    # The project is on the path only to import this module: the private root must not show it (its data holds the
    # tests), and the program must not import it.
    for entry in os.environ.pop("PYTHONPATH", "").split(os.pathsep):
        while entry in sys.path:
            sys.path.remove(entry)
    shown = [path for package in request["packages"].values() for path in package["shown"]]
    if request["private_root"]:
        enter_private_root(request["private_root"], os.getcwd(), request["uid"], request["tmpfs_mb"],
                           request["hidden"], shown)  # fmt: skip
    limits = request["limits"]
    # Limits are set here rather than in a `preexec_fn`, which may deadlock when the parent has threads (torch does).
    for limit, value in ((resource.RLIMIT_AS, limits["memory_bytes"]), (resource.RLIMIT_CPU, limits["cpu_s"]),
                         (resource.RLIMIT_FSIZE, limits["file_bytes"]), (resource.RLIMIT_CORE, 0),
                         (resource.RLIMIT_NPROC, limits["processes"])):  # fmt: skip
        resource.setrlimit(limit, (value, value))
    if request["uid"] is not None:
        drop_privileges(request["uid"])  # after the caps: an unprivileged process cannot raise them again
    sys.excepthook = traceback.print_exception
    mode = request["mode"]
    if mode == "probe":
        return
    main_module = types.ModuleType("__main__")
    sys.modules["__main__"], sys.argv = main_module, ["program.py"]
    namespace = main_module.__dict__
    calls = request.get("calls_fds")
    if request["packages"]:
        sys.meta_path.append(AllowedPackages(request["packages"]))
    install_guard(Reach(os.getcwd(), tuple(request["hidden"]), tuple(shown)))
    if mode == "check":
        run_source(request["context"], "context.py", namespace)
        for name in request["proxied"]:
            namespace[name] = call_proxy(name, *calls)
        run_source(request["program"], "tests.py", namespace)
        return
    run_source(request["program"], "program.py", namespace)
    if mode == "serve":
        serve_calls(namespace, *calls)


def run_source(source: str, filename: str, namespace: dict) -> None:
    """Execute `source` in `namespace`, with its lines in linecache for tracebacks (there is no file to read)."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    exec(compile(source, filename, "exec"), namespace)


# ----------------------------------------------------------------------------------------------------------------
# Containment below Python: a private root of read-only system paths, then an unprivileged, random uid.


def libc_call(name: str, *args: object) -> None:
    """Call a libc function that returns -1 and sets errno on failure; raise OSError naming it."""
    if getattr(ctypes.CDLL(None, use_errno=True), name)(*args) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"sandbox: {name}{args!r}: {os.strerror(error)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2), for a process that is root in its own mount namespace."""
    encoded = [None if value is None else value.encode() for value in (source, target, fstype)]
    libc_call("mount", *encoded, ctypes.c_ulong(flags), None if data is None else data.encode())


def bind_read_only(path: str, new_root: str) -> None:
    """Show `path` (a folder or file) at the same place under `new_root`, read-only, without setuid bits or devices."""
    target = new_root + path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(path):  # /lib -> usr/lib on merged-/usr systems: the link, its target is bound on its own
        os.symlink(os.readlink(path), target)
        return
    if os.path.isdir(path):
        os.makedirs(target, exist_ok=True)
    else:
        open(target, "a").close()
    mount(path, target, None, MS_BIND)
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def readable_paths() -> list[str]:
    """The system paths and this interpreter's import paths, outermost first, none inside another."""
    candidates = {*SYSTEM_PATHS, *sys.path}
    existing = sorted(os.path.abspath(path) for path in candidates if path and os.path.isdir(path))
    kept: list[str] = []
    for path in existing:
        if not any(path == outer or path.startswith(outer.rstrip("/") + "/") for outer in kept):
            kept.append(path)
    return kept


def show_read_only(new_root: str, hidden: list[str], shown: list[str]) -> None:
    """Bind the readable paths, empty each `hidden` folder they show (site folders inside the standard library's),
    then bind the `shown` paths (allowed packages) even where they lie in a hidden folder."""
    for path in readable_paths():
        bind_read_only(path, new_root)
    for path in hidden:
        if os.path.isdir(new_root + path):  # root-owned and mode 555: only we can add the mount points below
            mount("tmpfs", new_root + path, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=555")
    for path in shown:
        bind_read_only(path, new_root)


def enter_private_root(new_root: str, workdir: str, uid: int, tmpfs_mb: int, hidden: list[str], shown: list[str]
                       ) -> None:  # fmt: skip
    """Chroot into a fresh tmpfs holding `show_read_only`'s paths, a few devices, this pid namespace's /proc and an
    empty, writable `workdir` (the same path as outside); everything else on the machine is absent."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing mounted here propagates back to the machine
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={tmpfs_mb}m,mode=755")
    show_read_only(new_root, hidden, shown)
    os.makedirs(f"{new_root}/dev")
    for device in DEVICES:
        open(f"{new_root}/dev/{device}", "w").close()
        mount(f"/dev/{device}", f"{new_root}/dev/{device}", None, MS_BIND)
    os.makedirs(f"{new_root}/proc")
    mount("proc", f"{new_root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # this pid namespace's only
    os.makedirs(f"{new_root}/tmp", exist_ok=True)  # already there when the interpreter lives under /tmp
    os.chmod(f"{new_root}/tmp", 0o1777)
    os.makedirs(new_root + workdir)
    os.chown(new_root + workdir, uid, uid)
    os.chroot(new_root)
    os.chdir(workdir)


def drop_privileges(uid: int) -> None:
    """Become `uid` with no groups and no capabilities, for good: no setuid program can give them back."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    # A change of uid clears the death signal `unshare --kill-child` set (`tasks.sandbox`): set it again.
    libc_call("prctl", PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    libc_call("prctl", PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


# ----------------------------------------------------------------------------------------------------------------
# Calls between the checker and the solution's process: `tasks.plain_data` messages over pipes.


def serve_calls(namespace: dict, requests_fd: int, replies_fd: int) -> None:
    """Answer ("name", args, kwargs) calls with ("ok", result, args after the call) or ("error", type, message)."""
    while (request := read_message(requests_fd)) is not None:
        name, args, kwargs = decode(request)
        try:
            result = namespace[name](*args, **kwargs)
            reply = encode(("ok", result, args))
        except Exception as error:  # the checker raises it again, by name
            reply = encode(("error", type(error).__name__, str(error)))
        write_message(replies_fd, reply)


def call_proxy(name: str, replies_fd: int, requests_fd: int) -> Callable[..., object]:
    """A stand-in for the solution's function `name`: sends the call, returns the decoded result. Lists, dicts and
    sets passed as arguments are updated to what the function left in them, as they would be in one process."""

    def proxy(*args: object, **kwargs: object) -> object:
        write_message(requests_fd, encode((name, args, kwargs)))  # NotPlainData if the tests pass code
        reply = read_message(replies_fd)
        try:
            status, *rest = decode(reply)
            if status == "ok":
                result, args_after = rest
                for before, after in zip(args, args_after, strict=True):
                    update_in_place(before, after)
                return result
            error_type, message = rest
        except Exception as error:  # noqa: BLE001 - a closed pipe or any malformed reply fails the check outright
            fail_check(f"the solution's process gave no valid reply to {name}(): {error!r}")
        raise exception_named(error_type, message)

    proxy.__name__ = proxy.__qualname__ = name
    return proxy


def update_in_place(before: object, after: object) -> None:
    """Give a mutable argument the contents the solution's function left in its copy."""
    if type(before) is type(after) is list:
        before[:] = after
    elif type(before) is type(after) in (dict, set):
        before.clear()
        before.update(after)


def exception_named(type_name: str, message: str) -> Exception:
    """The builtin exception `type_name` with `message` (tests may expect ValueError), else a RuntimeError."""
    exception_type = getattr(builtins, type_name, None)
    if isinstance(exception_type, type) and issubclass(exception_type, Exception):
        try:
            return exception_type(message)
        except TypeError:  # builtins like UnicodeDecodeError take other arguments
            pass
    return RuntimeError(f"{type_name}: {message}")


def fail_check(reason: str) -> None:
    """End the checker at once with a failure that no `except` in the tests can catch."""
    print(f"sandbox: {reason}", file=sys.stderr, flush=True)
    os._exit(1)


if __name__ == "__main__":
    main()
