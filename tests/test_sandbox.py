"""The sandbox runs generated code in real child processes: only a program that runs to its end and exits 0 passes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tasks.sandbox import network_isolated, run_untrusted

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
