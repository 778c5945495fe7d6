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

from tests.conftest import record_figure

ROOT = Path(__file__).resolve().parents[1]
KILLS = 5
CELLS = 48  # 4 methods x 2 languages x 6 seeds


def grid_command(suite: Path, out: Path) -> list[str]:
    return [sys.executable, str(ROOT / "run_all.py"), "--suite", str(suite), "--methods", "base,lora,average",
            "--tasks", "math", "--langs", "zh,es", "--seeds", "0,1,2,3,4,5", "--out", str(out), "--device", "cpu"]  # fmt: skip


def cell_contents(out: Path) -> dict[str, dict]:
    """Every cell file, parsed, without the fields that legitimately differ between runs (timings)."""
    cells = {}
    for path in sorted((out / "cells").rglob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        cells[str(path.relative_to(out))] = {k: v for k, v in record.items() if k not in ("timings", "suite_build_seconds")}
    return cells


def kill_mid_grid(process: subprocess.Popen, out: Path, rng: random.Random) -> None:
    """SIGKILL once this process has written a new cell, at a random moment within the next cells' work."""
    done = len(list((out / "cells").rglob("*.json"))) if out.exists() else 0
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if out.exists() and len(list((out / "cells").rglob("*.json"))) > done:
            break
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.03))
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_killed_grid_resumes_to_the_uninterrupted_result(tiny_suite, tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    reference = tmp_path / "reference"
    subprocess.run(grid_command(tiny_suite, reference), check=True, capture_output=True, env=environment)
    interrupted = tmp_path / "interrupted"
    rng = random.Random(0)
    for _ in range(KILLS):
        process = subprocess.Popen(grid_command(tiny_suite, interrupted), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, env=environment)  # fmt: skip
        kill_mid_grid(process, interrupted, rng)
    finished_before_resume = len(cell_contents(interrupted))  # every file present parses: none is half-written
    subprocess.run(grid_command(tiny_suite, interrupted), check=True, capture_output=True, env=environment)
    expected, resumed = cell_contents(reference), cell_contents(interrupted)
    assert len(expected) == CELLS
    assert KILLS <= finished_before_resume < CELLS  # every kill landed after a new cell and before the end
    assert resumed == expected
    record_figure("grid kills", f"crash safety: grid survived {KILLS} SIGKILLs ({finished_before_resume} of {CELLS} cells done "
                  f"before the final rerun); {len(resumed)} cells identical to an uninterrupted run")


BUILD_SCRIPT = """
import sys, time
from pathlib import Path

from tests.conftest import record_figure
from bench.storage import atomic_directory
with atomic_directory(Path(sys.argv[1])) as scratch:
    (scratch / "base.bin").write_bytes(b"x" * 1000)
    print("started", flush=True)
    time.sleep(float(sys.argv[2]))  # a long build, killed here
    (scratch / "build.json").write_text("{}")
"""


def test_cache_entry_killed_mid_build_never_appears(tmp_path):
    target = tmp_path / "cache" / "builtin-abc"
    command = [sys.executable, "-c", BUILD_SCRIPT, str(target)]
    for _ in range(KILLS):
        process = subprocess.Popen(command + ["30"], stdout=subprocess.PIPE, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert process.stdout.readline().strip() == b"started"
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not target.exists()  # a half-built entry is never visible under its real name
    subprocess.run(command + ["0"], check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
    assert sorted(path.name for path in target.iterdir()) == ["base.bin", "build.json"]
    record_figure("cache kills", f"crash safety: a cache entry survived {KILLS} SIGKILLs mid-build, never half-visible")
