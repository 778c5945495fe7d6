"""The sandbox runs generated code in real child processes: only a program that runs to its end and exits 0 passes."""

from __future__ import annotations

import collections
import importlib.util
import math
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks import sandbox
from tasks.plain_data import NotPlainData, decode, encode
from tasks.sandbox import containment, network_isolated, run_untrusted

TIMEOUT_S = 2.0


def test_passing_program_passes_and_keeps_its_output():
    result = run_untrusted("print('hello')\nassert 1 + 1 == 2", timeout_s=TIMEOUT_S)
    assert result.passed and result.status == "passed" and result.exit_code == 0
    assert result.stdout == "hello\n"  # the sentinel is stripped


@pytest.mark.parametrize(
    "program",
    [
        "assert 1 + 1 == 3",
        "raise ValueError('boom')",
        "def f(:\n    pass",
        "import nonexistent_module_for_the_sandbox_test",
    ],
    ids=["failing-assert", "exception", "syntax-error", "import-error"],
)
def test_errors_fail(program):
    result = run_untrusted(program, timeout_s=TIMEOUT_S)
    assert not result.passed and result.status == "failed" and result.exit_code != 0


def test_traceback_shows_the_program_line():
    result = run_untrusted("x = 1\nraise ValueError('boom')", timeout_s=TIMEOUT_S)
    assert "raise ValueError('boom')" in result.stderr and "ValueError: boom" in result.stderr


@pytest.mark.parametrize(
    "program",
    ["import sys\nsys.exit(0)\nassert False", "import os\nos._exit(0)\nassert False", "raise SystemExit"],
    ids=["sys.exit", "os._exit", "SystemExit"],
)
def test_exit_zero_before_the_end_fails(program):
    result = run_untrusted(program, timeout_s=TIMEOUT_S)
    assert not result.passed and result.status == "exited_early"


def test_infinite_loop_times_out_promptly():
    started = time.monotonic()
    result = run_untrusted("while True:\n    pass", timeout_s=TIMEOUT_S)
    assert not result.passed and result.status in {"timeout", "killed"}
    assert time.monotonic() - started < TIMEOUT_S + 2


def test_sleeping_program_is_killed_at_the_wall_clock_limit():
    started = time.monotonic()
    result = run_untrusted("import time\ntime.sleep(60)", timeout_s=1.0)
    assert result.status == "timeout" and result.exit_code is None
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("program", ["x = [0] * (4 * 1024**3 // 8)", "x = bytearray(4 * 1024**3)"])
def test_memory_hog_fails_without_hurting_the_parent(program):
    result = run_untrusted(program, timeout_s=TIMEOUT_S, memory_mb=512)
    assert not result.passed and result.status in {"failed", "killed"}
    assert "MemoryError" in result.stderr or result.status == "killed"


@pytest.mark.parametrize(
    "program",
    [
        "import os\nwhile True:\n    os.fork()",
        "import subprocess\nsubprocess.run(['sleep', '60'])",
        "import os\nos.system('sleep 60')",
        "import multiprocessing\nmultiprocessing.Process(target=print).start()",
        "import os\nos.kill(os.getppid(), 0)",
    ],
    ids=["fork-bomb", "subprocess", "os.system", "multiprocessing", "kill-parent"],
)
def test_process_creation_and_signals_are_refused(program):
    started = time.monotonic()
    result = run_untrusted(program, timeout_s=TIMEOUT_S)
    assert not result.passed and result.status == "failed"
    assert "PermissionError: sandbox:" in result.stderr
    assert time.monotonic() - started < TIMEOUT_S


def test_infinite_output_is_bounded():
    started = time.monotonic()
    program = "while True:\n    print('x' * 1000)"
    result = run_untrusted(program, timeout_s=TIMEOUT_S, max_output_bytes=4096, max_file_mb=1)
    assert not result.passed
    assert len(result.stdout.encode()) <= 4096 and len(result.stderr.encode()) <= 4096
    assert time.monotonic() - started < TIMEOUT_S + 2


@pytest.mark.parametrize(
    "write",
    [
        "open({path!r}, 'w').write('escaped')",
        "open({path!r}, mode='a').write('escaped')",
        "import pathlib\npathlib.Path({path!r}).write_text('escaped')",
        "import os\nos.close(os.open({path!r}, os.O_CREAT | os.O_WRONLY))",
        "import os\nos.symlink({path!r}, 'link')\nopen('link', 'w').write('escaped')",
    ],
    ids=["open-w", "open-a", "pathlib", "os.open", "symlink"],
)
def test_writing_outside_the_working_directory_is_refused(tmp_path, write):
    target = tmp_path / "escaped.txt"
    result = run_untrusted(write.format(path=str(target)), timeout_s=TIMEOUT_S)
    assert not result.passed and "PermissionError: sandbox:" in result.stderr
    assert not target.exists()


def test_deleting_outside_the_working_directory_is_refused(tmp_path):
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "file.txt").write_text("data")
    result = run_untrusted(f"import shutil\nshutil.rmtree({str(keep)!r})", timeout_s=TIMEOUT_S)
    assert not result.passed and (keep / "file.txt").exists()


def test_files_inside_the_working_directory_are_allowed():
    program = (
        "import os, shutil, tempfile\n"
        "open('a.txt', 'w').write('data')\n"
        "os.mkdir('sub')\n"
        "os.rename('a.txt', 'sub/b.txt')\n"
        "assert open('sub/b.txt').read() == 'data'\n"
        "shutil.rmtree('sub')\n"
        "with tempfile.TemporaryDirectory() as scratch:\n"
        "    open(os.path.join(scratch, 'c.txt'), 'w').write('x')\n"
        "assert open(os.__file__).read()  # reading anywhere is fine\n"
    )
    result = run_untrusted(program, timeout_s=TIMEOUT_S)
    assert result.passed, result.stderr


def test_parent_environment_does_not_leak(monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    program = "import os\nassert 'SECRET_TOKEN' not in os.environ\nassert os.environ['HOME'] == os.getcwd()"
    result = run_untrusted(program, timeout_s=TIMEOUT_S)
    assert result.passed, result.stderr


@pytest.mark.parametrize("program", ["import time\ntime.sleep(60)", ""], ids=["after-timeout", "after-pass"])
def test_temporary_directory_is_removed(program):
    result = run_untrusted(f"import os\nprint(os.getcwd(), flush=True)\n{program}", timeout_s=1.0)
    workdir = Path(result.stdout.strip())
    assert workdir.is_absolute() and "sandbox-" in str(workdir)
    assert not workdir.exists() and not workdir.parent.exists()


def test_hash_seed_is_fixed():
    first = run_untrusted("print(hash('lora'))", timeout_s=TIMEOUT_S)
    second = run_untrusted("print(hash('lora'))", timeout_s=TIMEOUT_S)
    assert first.passed and first.stdout == second.stdout


def test_sockets_are_refused():
    result = run_untrusted("import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=1)", timeout_s=TIMEOUT_S)
    assert not result.passed and "PermissionError: sandbox: network sockets are disabled" in result.stderr


def test_modules_subclassing_socket_still_import():
    result = run_untrusted("import ssl, asyncio, http.client", timeout_s=TIMEOUT_S)
    assert result.passed, result.stderr


@pytest.mark.parametrize(
    "program",
    [
        "import http.client\nhttp.client.socket.socket()",  # imported by a stdlib module, not by the program
        "from socket import socket\nsocket()",
        "import asyncio.base_events\nfrom subprocess import Popen\nPopen(['true'])",
        "import importlib\nimportlib.import_module('subprocess').run(['true'])",
    ],
    ids=["through-http.client", "from-import", "after-asyncio", "import_module"],
)
def test_modules_guarded_on_import_are_guarded_however_they_are_imported(program):
    result = run_untrusted(program, timeout_s=TIMEOUT_S)
    assert not result.passed and "PermissionError: sandbox:" in result.stderr, result.stderr


def test_a_child_imports_neither_socket_nor_subprocess_nor_shutil_until_asked():
    """They are guarded as they are imported (`tasks.sandbox_guard.GuardOnImport`), not imported to be guarded."""
    result = run_untrusted("import sys\nprint(sorted({'socket', 'subprocess', 'shutil'} & set(sys.modules)))",
                           timeout_s=TIMEOUT_S)  # fmt: skip
    assert result.passed and result.stdout == "[]\n", result.stderr


def test_exited_within_learns_the_exit_and_the_timeout():
    quick = subprocess.Popen([sys.executable, "-c", "pass"])
    assert sandbox.exited_within(quick, 30.0) and quick.wait() == 0
    slow = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not sandbox.exited_within(slow, 0.2) and slow.poll() is None
    finally:
        slow.kill()
        slow.wait()
    assert sandbox.exited_within(slow, 0.2)  # already reaped: no pidfd, `Popen.wait` answers at once


@pytest.mark.skipif(not network_isolated(), reason="`unshare --net` is unavailable on this platform")
def test_network_namespace_has_no_route_even_past_the_guard():
    program = (
        "import _socket\n"
        "s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
        "s.settimeout(1)\n"
        "try:\n"
        "    s.connect(('1.1.1.1', 53))\n"
        "except OSError:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('connected')\n"
    )
    result = run_untrusted(program, timeout_s=TIMEOUT_S)
    assert result.passed and result.network_isolated, result.stderr


def test_resource_module_is_blocked():
    result = run_untrusted("import resource", timeout_s=TIMEOUT_S)
    assert not result.passed and "import of resource halted" in result.stderr


# ----------------------------------------------------------------------------------------------------------------
# Hostile code below the Python guard: what it achieves is checked from outside, after the run.

needs_namespaces = pytest.mark.skipif(
    not containment().startswith("namespaces"),
    reason="needs root and a working `unshare` (the sandbox's 'namespaces' containment)",
)


def processes_with_argument(marker: str) -> list[str]:
    """Pids of this machine's processes whose command line holds `marker`."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


# Each leaves a `sleep <marker>` behind that must not outlive the run.
DESCENDANTS = {
    "posix.fork-double-fork-daemon": (
        "import posix, time\n"
        "if posix.fork() == 0:\n"
        "    posix.setsid()\n"
        "    if posix.fork() == 0:\n"
        "        posix.execv('/bin/sleep', ['sleep', '{marker}'])\n"
        "    posix._exit(0)\n"
        "time.sleep(0.5)\n"
    ),
    "importlib.reload(os)": (
        "import importlib, os, time\nimportlib.reload(os)\n"
        "if os.fork() == 0:\n    os.execv('/bin/sleep', ['sleep', '{marker}'])\ntime.sleep(0.5)\n"
    ),
}


@needs_namespaces
@pytest.mark.parametrize("program", DESCENDANTS.values(), ids=DESCENDANTS.keys())
def test_no_descendant_outlives_the_run(program):
    marker = f"{secrets.randbelow(10**6) + 10**6}.{secrets.randbelow(10**6)}"  # a valid, unique `sleep` argument
    result = run_untrusted(program.replace("{marker}", marker), timeout_s=TIMEOUT_S)
    assert result.passed, result.stderr  # the fork itself works below the guard; the namespace ends it
    assert processes_with_argument(marker) == []


@needs_namespaces
def test_process_count_is_capped_below_python():
    program = (
        "import posix, time\n"
        "for _ in range(200):\n"
        "    if posix.fork() == 0:\n"
        "        time.sleep(10)\n"
        "        posix._exit(0)\n"
    )
    started = time.monotonic()
    result = run_untrusted(program, timeout_s=TIMEOUT_S)
    assert result.status == "failed" and "BlockingIOError" in result.stderr  # RLIMIT_NPROC, for the sandbox's uid
    assert time.monotonic() - started < TIMEOUT_S + 1


LOW_LEVEL_WRITES = {
    "io.FileIO": "import io\nio.FileIO({path!r}, 'w').write(b'escaped')",
    "_io.open": "import _io\n_io.open({path!r}, 'w').write('escaped')",
    "posix.open": "import posix\nposix.write(posix.open({path!r}, posix.O_CREAT | posix.O_WRONLY), b'escaped')",
}


@needs_namespaces
@pytest.mark.parametrize("where", ["test's folder", "/tmp", "interpreter prefix"])
@pytest.mark.parametrize("write", LOW_LEVEL_WRITES.values(), ids=LOW_LEVEL_WRITES.keys())
def test_low_level_writes_outside_the_working_directory_change_nothing(tmp_path, write, where):
    """Out of sight (the test's folder), private (/tmp) or read-only (the interpreter, which the sandbox shows)."""
    folder = {"test's folder": tmp_path, "/tmp": Path("/tmp"), "interpreter prefix": Path(sys.prefix)}[where]
    target = folder / f"sandbox-escaped-{secrets.token_hex(8)}"
    try:
        result = run_untrusted(write.format(path=str(target)), timeout_s=TIMEOUT_S)
        assert not target.exists()
        assert result.passed is (where == "/tmp"), result.stderr  # else FileNotFoundError or a read-only file system
    finally:
        target.unlink(missing_ok=True)


@needs_namespaces
def test_the_scorers_environment_cannot_be_read_through_proc(tmp_path):
    """The secret is in the scoring process's own environment block (what /proc/<pid>/environ shows)."""
    outside = tmp_path / "stolen.txt"
    program = (
        "import posix\nstolen = b''\n"
        "for pid in [p for p in posix.listdir('/proc') if p.isdigit()] + [str(posix.getppid())]:\n"
        "    try:\n"
        "        stolen += open(f'/proc/{pid}/environ', 'rb').read()\n"
        "    except OSError:\n"
        "        pass\n"
        "print(stolen)\n"
        "try:\n"
        f"    posix.write(posix.open({str(outside)!r}, posix.O_CREAT | posix.O_WRONLY), stolen)\n"
        "except OSError:\n"
        "    pass\n"
    )
    scorer = f"from tasks.sandbox import run_untrusted\nprint(run_untrusted({program!r}, timeout_s=5).stdout)"
    environment = {**os.environ, "SECRET_TOKEN": "do-not-leak-through-proc"}
    command = [sys.executable, "-c", scorer]
    finished = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=30)
    assert finished.returncode == 0, finished.stderr
    assert "b'" in finished.stdout and "do-not-leak" not in finished.stdout
    assert not outside.exists()


@needs_namespaces
def test_the_sandbox_shows_no_project_file_and_runs_as_no_one():
    program = (
        f"import os\nassert not os.path.exists({str(Path(__file__).resolve())!r})\n"
        "assert os.getuid() != 0 and os.getgid() != 0\n"
        "assert sorted(p for p in os.listdir('/proc') if p.isdigit()) == ['1']  # its own pid namespace\n"
        "import json, decimal  # the standard library is there, read-only (site folders not: test_sandbox_isolation)\n"
    )
    result = run_untrusted(program, timeout_s=TIMEOUT_S)
    assert result.passed and result.containment.startswith("namespaces"), result.stderr


# ----------------------------------------------------------------------------------------------------------------
# Results cross from a solution's process to the checker as plain data of exact builtin types only.


@pytest.mark.parametrize(
    "value",
    [None, True, 0, -(2**70), 1.5, -0.0, float("inf"), 1 - 2j, "ü", b"\x00\xff", [1, [2]], (1, (2,)), {(1, 2): {3}},
     {frozenset({1}): [()]}, set(), frozenset()],
)  # fmt: skip
def test_plain_data_round_trips_with_exact_types(value):
    decoded = decode(encode(value))
    assert decoded == value and type(decoded) is type(value)
    assert repr(decoded) == repr(value)


@pytest.mark.parametrize(
    "value",
    [7**6000, -(7**6000), [2**20000], {7**6000: "x"}, "\ud800", "a\udfff\ud800", "\ud83d\ude00",
     {"\ud800": ("\udc00",)}, "\U0001f600"],
    ids=["huge-int", "huge-negative-int", "in-list", "dict-key", "lone-surrogate", "reversed-pair", "surrogate-pair",
         "surrogates-in-containers", "astral-character"],
)  # fmt: skip
def test_plain_data_carries_huge_ints_and_lone_surrogates(value):
    """Past the 4300-digit limit of int-to-string conversion, and not UTF-8 (a surrogate pair stays two characters)."""
    decoded = decode(encode(value))
    assert decoded == value and type(decoded) is type(value)  # str equality compares code points


def test_plain_data_keeps_nan():
    assert math.isnan(decode(encode(float("nan"))))


class AlwaysEqual:
    def __eq__(self, other):
        return True


class Number(int):
    pass


@pytest.mark.parametrize("value", [AlwaysEqual(), Number(3), [Number(3)], {1: AlwaysEqual()}, collections.OrderedDict(),
                                   collections.namedtuple("Pair", "a b")(1, 2), iter([]), bytearray(b"x")])  # fmt: skip
def test_plain_data_refuses_other_types_and_subclasses(value):
    with pytest.raises(NotPlainData):
        encode(value)


def test_guard_fallback_still_runs_and_judges(monkeypatch):
    """Where the namespaces are missing, children run as the scorer's user under the Python guard alone."""
    monkeypatch.setattr(sandbox, "containment", lambda: "guard")
    assert run_untrusted("print('hi')", timeout_s=TIMEOUT_S).stdout == "hi\n"
    assert "PermissionError: sandbox:" in run_untrusted("import os\nos.fork()", timeout_s=TIMEOUT_S).stderr
    solution = "def twice(x):\n    return 2 * x\n"
    checked = sandbox.run_checked(solution, "", "assert twice(4) == 8", ("twice",), timeout_s=TIMEOUT_S)
    assert checked.passed and checked.containment == "guard", checked.stderr
    assert not sandbox.run_checked(solution, "", "assert twice(4) == 9", ("twice",), timeout_s=TIMEOUT_S).passed


def test_the_modules_every_child_imports_have_fresh_bytecode():
    """Children run with -B, so they would compile these from source, twice an item, if the scorer did not."""
    sandbox.compile_child_modules.__wrapped__()
    for module in sandbox.CHILD_MODULES:
        source = sandbox.PROJECT_ROOT / module
        compiled = source.parent / "__pycache__" / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
        header = compiled.read_bytes()[:16]
        assert header[:4] == importlib.util.MAGIC_NUMBER, module
        assert int.from_bytes(header[8:12], "little") == int(source.stat().st_mtime), module  # what imports check
