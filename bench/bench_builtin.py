"""Wall time of the built-in suite: cache build from nothing, then the main command cold and warm.

    python -m bench.bench_builtin [--methods loraflow,lorahub]

Runs the real CLI in subprocesses with a fresh cache and output folder, and prints each run's own breakdown
(build, fit, generate, score). Goals (issue 3): build <= 4 min, cold run <= 6 min, warm run <= 3 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed_run(arguments: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "run_all.py", *arguments], capture_output=True, text=True, check=True)
    breakdown = next((line for line in finished.stdout.splitlines() if line.startswith("grid finished")), "")
    return time.perf_counter() - started, breakdown


def build_seconds(cache: Path) -> float:
    """Total of the per-step build times the cache entry recorded."""
    (build_record,) = cache.glob("builtin-*/build.json")
    return sum(json.loads(build_record.read_text())["seconds"].values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--methods", default="loraflow,lorahub")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        common = ["--methods", arguments.methods, "--cache-dir", str(cache), "--device", "cpu"]
        cold_seconds, cold_breakdown = timed_run([*common, "--out", str(Path(scratch) / "cold")])
        warm_seconds, warm_breakdown = timed_run([*common, "--out", str(Path(scratch) / "warm")])
        built = build_seconds(cache)
    print(f"cache build from nothing:            {built:7.1f} s   goal <= 240 s")
    print(f"cold run (empty cache):              {cold_seconds:7.1f} s   goal <= 360 s   [{cold_breakdown}]")
    print(f"warm run (cache built, new results): {warm_seconds:7.1f} s   goal <= 180 s   [{warm_breakdown}]")


if __name__ == "__main__":
    main()
