"""Scaling out on the tiny suite: --shard slices, runs sharing one --out through cell claims, and --launcher local
(submitit's LocalExecutor: real job processes), with a job SIGKILLed while it holds a claim."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.claims import read_holder
from bench.cli import main
from bench.grid import claim_path
from bench.launcher import LauncherSettings, make_executor
from bench.report import read_cells

ROOT = Path(__file__).resolve().parents[1]
GRID = ["--methods", "base,lora,average", "--tasks", "math", "--langs", "zh,es", "--seeds", "0,1", "--device", "cpu"]
CELLS = 16  # 4 rows x 2 languages x 2 seeds
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def grid(tiny_suite: Path, out: Path, *extra: str) -> list[str]:
    return ["--suite", str(tiny_suite), *GRID, "--out", str(out), *extra]


def command(tiny_suite: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "run_all.py"), *grid(tiny_suite, out, *extra)]


@pytest.fixture(scope="module")
def reference(tiny_suite, tmp_path_factory) -> pd.DataFrame:
    """The results of one plain run of the grid in one process."""
    out = tmp_path_factory.mktemp("reference")
    assert main(grid(tiny_suite, out)) == 0
    return pd.read_csv(out / "results.csv")


def computed_counts(stdout: str) -> list[int]:
    return [int(count) for count in re.findall(r"(\d+) cell\(s\) computed", stdout)]


def assert_every_cell_once(out: Path, reference: pd.DataFrame) -> None:
    """Every cell is there, whole, written once (a second write keeps the first as .replaced-N), no claim is left,
    and the table is the single run's."""
    cells = sorted((out / "cells").rglob("*.json"))
    assert len(cells) == CELLS and all(json.loads(cell.read_text())["n"] == 6 for cell in cells)
    assert not list((out / "cells").rglob("*.replaced-*"))
    assert not list((out / "claims").rglob("*.claim*"))
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), reference)


def test_shards_run_disjoint_slices_and_the_report_joins_them(tiny_suite, tmp_path, reference, capsys):
    out = tmp_path / "results"
    for index in range(3):
        assert main(grid(tiny_suite, out, "--shard", f"{index}/3")) == 0
        assert not (out / "table.md").exists()  # the report waits for --report-only
    stdout = capsys.readouterr().out
    assert computed_counts(stdout) == [6, 5, 5] and "left to `--report-only`" in stdout
    assert main(grid(tiny_suite, out, "--report-only")) == 0
    assert_every_cell_once(out, reference)


def test_a_cell_claimed_by_a_live_run_is_left_to_it_and_taken_over_once_it_dies(tiny_suite, tmp_path, capsys):
    out = tmp_path / "results"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    claim = claim_path(out, tiny_suite.name, "average", "math", "zh", 1)
    claim.parent.mkdir(parents=True)
    start = Path(f"/proc/{holder.pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    record = {"host": socket.gethostname(), "pid": holder.pid, "process_start": start, "claimed_at": time.time()}
    claim.write_text(json.dumps(record))
    try:
        assert main(grid(tiny_suite, out)) == 0
        stdout = capsys.readouterr().out
        assert f"note: average on math-zh-seed1 (claimed by pid {holder.pid} on " in stdout
        assert len(read_cells(out)) == CELLS - 1 and claim.exists()
    finally:
        holder.kill()
        holder.wait()
    assert main(grid(tiny_suite, out)) == 0
    stdout = capsys.readouterr().out
    assert computed_counts(stdout) == [1] and f"took over the claim of pid {holder.pid}" in stdout
    assert len(read_cells(out)) == CELLS and not claim.exists()


def test_two_runs_of_the_whole_grid_into_one_folder_share_its_cells(tiny_suite, tmp_path, reference):
    out = tmp_path / "results"
    runs = [subprocess.Popen(command(tiny_suite, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=ENVIRONMENT) for _ in range(2)]  # fmt: skip
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [error[-2000:] for _, error in outputs]
    counts = [computed_counts(stdout)[0] for stdout, _ in outputs]
    assert sum(counts) == CELLS, counts  # none computed twice, none lost
    assert_every_cell_once(out, reference)


def test_local_launcher_runs_one_job_per_shard_and_writes_the_report(tiny_suite, tmp_path, reference):
    out = tmp_path / "results"
    finished = subprocess.run(command(tiny_suite, out, "--launcher", "local", "--jobs", "2"), capture_output=True,
                              text=True, env=ENVIRONMENT, timeout=600)  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "2 local job(s) finished" in finished.stdout and computed_counts(finished.stdout) == [8, 8]
    assert len(list((out / "jobs").glob("*_result.pkl"))) == 2  # submitit's record of each job
    assert_every_cell_once(out, reference)


def stop_holder_of_an_unfinished_cell(out: Path, deadline: float) -> tuple[int, Path]:
    """SIGKILL a job while it holds the claim of a cell it has not written: stop it when a claim appears, check the
    claim is still its own and the cell unwritten, else let it go on and look again. Return its pid and the cell."""
    while time.monotonic() < deadline:
        for claim in (out / "claims").rglob("*.claim"):
            holder = read_holder(claim)
            if holder is None:
                continue
            try:
                os.kill(holder.pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            cell = out / "cells" / claim.relative_to(out / "claims").with_suffix(".json")
            if read_holder(claim) == holder and not cell.exists():
                os.kill(holder.pid, signal.SIGKILL)
                return holder.pid, cell
            os.kill(holder.pid, signal.SIGCONT)
        time.sleep(0.002)
    raise AssertionError("no job claimed a cell in time")


def test_a_job_killed_while_holding_a_claim_is_retried_and_its_cell_finished(tiny_suite, tmp_path, reference):
    out = tmp_path / "results"
    launcher = subprocess.Popen(command(tiny_suite, out, "--launcher", "local", "--jobs", "2", "--retries", "1"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENVIRONMENT)  # fmt: skip
    try:
        killed, cell = stop_holder_of_an_unfinished_cell(out, time.monotonic() + 300)
    finally:
        stdout, stderr = launcher.communicate(timeout=600)
    assert launcher.returncode == 0, stderr[-3000:]
    assert "(attempt 2)" in stdout and f"took over the claim of pid {killed} " in stdout
    assert "died without a result" in stderr  # the launcher's note on the killed job before it submits it again
    assert json.loads(cell.read_text())["n"] == 6
    assert_every_cell_once(out, reference)


def test_slurm_executor_carries_partition_time_and_gpus(tmp_path, monkeypatch):
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "srun").write_text("#!/bin/sh\nexit 0\n")  # submitit looks for srun to know it is on a cluster
    (fake_bin / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake_bin}{os.pathsep}{os.environ['PATH']}")
    settings = LauncherSettings(kind="slurm", jobs=4, slurm_partition="gpu", slurm_time=90, slurm_gpus_per_task=1)
    script = make_executor(settings, tmp_path / "jobs")._make_submission_file_text("python -c pass", "uid")
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --job-name=lora-compose-bench"):  # fmt: skip
        assert line in script, script


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--shard", "2/2"], "--shard 2/2: expected I/N with 0 <= I < N"),
        (["--shard", "1"], "--shard 1: expected I/N"),
        (["--jobs", "3"], "--jobs: only with --launcher local or slurm"),
        (["--launcher", "local", "--slurm-partition", "gpu"], "--slurm-partition: only with --launcher slurm"),
        (["--launcher", "local", "--jobs", "0"], "--jobs 0: must be at least 1"),
        (["--launcher", "local", "--shard", "0/2"], "--shard 0/2: --launcher gives each job its own shard"),
        (["--claim-timeout", "0"], "--claim-timeout 0.0: must be more than 0"),
    ],
)
def test_bad_scaling_options_fail_at_once_naming_the_option(arguments, message, tmp_path, capsys):
    assert main(["--methods", "base", "--out", str(tmp_path / "r"), *arguments]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    assert not (tmp_path / "r" / "jobs").exists()
