"""Wall time of the built-in suite's main command, cold and warm, and (with --rebuild) its build from nothing.

    python -m bench.speed.builtin [--methods loraflow,lorahub] [--rebuild]

Runs the real CLI in subprocesses with a fresh cache and output folder, and prints each run's own breakdown
(build, fit, generate, score). The default suite ships built (bench/shipped_suite.py), so a cold run loads it.
Goals (issue 24): cold run <= 150 s, warm run (new output folder) <= 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.shipped_suite import rebuild


def timed_run(arguments: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "run_all.py", *arguments], capture_output=True, text=True, check=True)
    breakdown = next((line for line in finished.stdout.splitlines() if line.startswith("grid finished")), "")
    return time.perf_counter() - started, breakdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--methods", default="loraflow,lorahub")
    parser.add_argument("--rebuild", action="store_true", help="also time the build of the shipped suite from nothing")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        common = ["--methods", arguments.methods, "--cache-dir", str(cache), "--device", "cpu"]
        cold_seconds, cold_breakdown = timed_run([*common, "--out", str(Path(scratch) / "cold")])
        warm_seconds, warm_breakdown = timed_run([*common, "--out", str(Path(scratch) / "warm")])
    print(f"cold run (empty cache, shipped suite): {cold_seconds:7.1f} s   goal <= 150 s   [{cold_breakdown}]")
    print(f"warm run (new results folder):         {warm_seconds:7.1f} s   goal <= 60 s    [{warm_breakdown}]")
    if arguments.rebuild:
        started = time.perf_counter()
        found = rebuild(replace=False)
        print(f"build from nothing:                    {time.perf_counter() - started:7.1f} s   "
              + ("same bytes as shipped" if not found else f"{len(found)} file(s) differ from the shipped ones"))


if __name__ == "__main__":
    main()
