"""SIGKILL the grid at random moments, rerun it, and get exactly the cells of an uninterrupted run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KILLS = 5


def grid_command(suite: Path, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "run_all.py"), "--suite", str(suite), "--methods", "base,lora,average",
            "--tasks", "math", "--langs", "zh,es", "--seeds", "0,1,2", "--out", str(out), "--device", "cpu"]  # fmt: skip


def cell_contents(out: Path) -> dict[str, dict]:
    """Every cell file, parsed, without the fields that legitimately differ between runs (timings)."""
    cells = {}
    for path in sorted((out / "cells").rglob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        cells[str(path.relative_to(out))] = {k: v for k, v in record.items() if k not in ("timings", "suite_build_seconds")}
    return cells


def test_killed_grid_resumes_to_the_uninterrupted_result(tiny_suite, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    reference = tmp_path / "reference"
    subprocess.run(grid_command(tiny_suite, reference), check=True, capture_output=True, env=environment)
    interrupted = tmp_path / "interrupted"
    rng = random.Random(0)
    for _ in range(KILLS):
        process = subprocess.Popen(grid_command(tiny_suite, interrupted), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=environment)  # fmt: skip
        time.sleep(rng.uniform(2.0, 6.0))
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished_before_resume = len(cell_contents(interrupted))  # every file present parses: none is half-written
    subprocess.run(grid_command(tiny_suite, interrupted), check=True, capture_output=True, env=environment)
    expected, resumed = cell_contents(reference), cell_contents(interrupted)
    assert len(expected) == 24
    assert resumed == expected
    print(f"survived {KILLS} SIGKILLs ({finished_before_resume} of 24 cells done before the final rerun); "
          f"{len(resumed)} cells identical to an uninterrupted run")
