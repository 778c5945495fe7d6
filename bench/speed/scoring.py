"""What scoring code costs, per item, against the floor of starting bare interpreters.

    python -m bench.speed.scoring [--items 100] [--rounds 3]

Scores the built-in suite's code zh test items (shipped, so no build) twice over, once with each item's canonical
solution and once with a solution that fails its tests, on as many threads as the grid scores with. Each item starts
two sandboxed children (the checker and the solution's process, `tasks.sandbox.run_checked`). Printed:
- the wall time per item of the grid's scorer, with the child's exit learnt through a pidfd (what the sandbox does)
  against `Popen.wait`'s sleep polling, interleaved over rounds, with the ratio;
- the CPU time per item of the children and of the scorer itself;
- the floor: two bare `python -S` starts, one after the other, and what a child's own imports add to one.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import replace

import bench.builtin_suite  # noqa: F401  (registers the built-in suite)
from bench.grid import score_all
from bench.suites import SuiteOptions, load_suite
from tasks import sandbox
from tasks.registry import TASKS

FAILING_BODY = "    raise NotImplementedError\n"


def polled_exit(process: subprocess.Popen, timeout_s: float) -> bool:
    """`tasks.sandbox.exited_within` as `Popen.wait(timeout)` does it: sleeps that grow to 50 ms."""
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def timed_scoring(score, examples, completions) -> tuple[float, float, float, list[bool]]:
    """Wall, children's CPU and own CPU seconds of `score_all`, and its verdicts."""
    before, started = os.times(), time.perf_counter()
    verdicts = score_all(score, examples, completions)
    wall, after = time.perf_counter() - started, os.times()
    children = after.children_user + after.children_system - before.children_user - before.children_system
    own = after.user + after.system - before.user - before.system
    return wall, children, own, verdicts


def start_seconds(arguments: list[str], runs: int = 20) -> float:
    """Mean wall seconds of starting and ending an interpreter with `arguments`, as a child is started."""
    environment = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(sandbox.PROJECT_ROOT)}
    started = time.perf_counter()
    for _ in range(runs):
        subprocess.run([sys.executable, *sandbox.PYTHON_FLAGS, *arguments], env=environment, check=True)
    return (time.perf_counter() - started) / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100, help="test items of code zh (each scored twice)")
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    cell = load_suite("builtin", SuiteOptions(device="cpu")).cells[("code", "zh")]
    examples = cell.test[: arguments.items]
    failing = [replace(example, target=FAILING_BODY) for example in examples]
    examples, completions = examples + failing, [example.target for example in examples + failing]
    score = TASKS["code"].scorer_for("zh")
    exact_exit = sandbox.exited_within
    timings: dict[str, list[tuple[float, float, float]]] = {"pidfd": [], "polling": []}
    for _ in range(arguments.rounds):
        for name, exit_check in (("polling", polled_exit), ("pidfd", exact_exit)):
            sandbox.exited_within = exit_check
            wall, children, own, verdicts = timed_scoring(score, examples, completions)
            timings[name].append((wall, children, own))
    sandbox.exited_within = exact_exit
    n = len(examples)
    print(f"# {n} code items ({sum(verdicts)} pass), {os.cpu_count()} scoring threads, {sandbox.containment()}")
    for name, runs in timings.items():
        walls = " ".join(f"{wall / n * 1000:.1f}" for wall, _, _ in runs)
        children = sum(run[1] for run in runs) / len(runs) / n * 1000
        own = sum(run[2] for run in runs) / len(runs) / n * 1000
        print(f"{name:8s} wall ms/item: {walls}   CPU ms/item: children {children:.1f}, scorer {own:.1f}")
    ratios = [polled[0] / exact[0] for polled, exact in zip(timings["polling"], timings["pidfd"])]
    print("polling / pidfd wall, per round: " + " ".join(f"{ratio:.2f}x" for ratio in ratios))
    bare = start_seconds(["-c", "pass"])
    child = start_seconds(["-c", "import tasks.sandbox_child"])
    print(f"floor: a bare interpreter starts in {bare * 1000:.1f} ms; with the child's imports {child * 1000:.1f} ms "
          f"(an item starts two children)")


if __name__ == "__main__":
    main()
