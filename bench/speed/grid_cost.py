"""What a full grid would cost on this machine, measured on short runs of the real code: the long-running part of a
suite's grid, projected before anyone starts it.

    python -m bench.speed.grid_cost --suite real --data-dir ../shared/data [--cells math-es,code-ru] [--steps 2]

For each cell it times, with the methods' own code and the suite's own data and settings:
- LoRA-Flow: `--steps` gate-training steps (the default budget's batch size, on a seeded draw of the cell's train
  examples) and one dev-loss check, projected to the full budget (`LoraFlowTraining`: epochs x train / batch steps,
  `evaluations` dev checks);
- LoraHub: `--steps` candidates scored on the cell's few-shot examples, projected to `max_inference_step`;
- generation: one batch of test prompts by the base model with the suite's token budget and stops, projected to the
  whole test split (every row of the table generates once per cell; rows with adapters attached decode a little
  slower, and their replies may run longer or shorter).
Then it prints the projected seconds per cell and for a grid of the given methods. Projections are rough: batches
vary in length, and a generation batch stops when its longest reply does.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import bench.builtin_suite  # noqa: F401  (registers the built-in suite)
import bench.real_suite  # noqa: F401  (registers the real and paper suites)
from bench.generation import generate_completions
from bench.grid import make_cell
from bench.suites import Suite, SuiteOptions, load_suite
from methods.loraflow import LoraFlow, LoraFlowConfig
from methods.lorahub import LoraHub, LoraHubConfig
from methods.training import mean_target_loss

GENERATING_ROWS = ("base", "language_lora", "skill_lora", "average", "lorahub", "loraflow")


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def loraflow_seconds(suite: Suite, task: str, language: str, steps: int, scratch: Path) -> tuple[float, float, float]:
    """(seconds per gate-training step over `steps` steps, seconds per dev check, full-budget steps) on the cell."""
    full = LoraFlowConfig()
    cell = make_cell(suite, task, language, 0, scratch)
    total_steps = full.epochs * math.ceil(len(cell.train) / full.batch_size)
    short = dataclasses.replace(full, epochs=steps * full.batch_size / len(cell.train), evaluations=0)
    method = LoraFlow(dataclasses.replace(cell, dev=[]), short)  # no dev set: the steps alone
    step_seconds = timed(method.fit) / steps
    dev_seconds = timed(lambda: mean_target_loss(method.model, cell.tokenizer, cell.dev, max_length=full.max_length))
    return step_seconds, dev_seconds, total_steps


def lorahub_seconds(suite: Suite, task: str, language: str, steps: int, scratch: Path) -> tuple[float, float]:
    """(seconds for a search of `steps` candidates, the default budget) on the cell."""
    full = LoraHubConfig()
    method = LoraHub(make_cell(suite, task, language, 0, scratch), dataclasses.replace(full, max_inference_step=steps))
    return timed(method.fit), full.max_inference_step


def generation_seconds(suite: Suite, task: str, language: str, batch_size: int) -> tuple[float, float]:
    """(seconds for one batch of the cell's test prompts, the number of batches in its test split)."""
    test = suite.cells[(task, language)].test
    prompts = [example.prompt for example in test[:batch_size]]
    max_new_tokens, stop = suite.answer_limits(task)
    seconds = timed(lambda: generate_completions(suite.model, suite.tokenizer, prompts, max_new_tokens, stop, batch_size))
    return seconds, math.ceil(len(test) / batch_size)


def measure_cell(suite: Suite, task: str, language: str, steps: int, batch_size: int, scratch: Path) -> dict:
    step, dev_check, loraflow_steps = loraflow_seconds(suite, task, language, steps, scratch)
    lorahub, lorahub_steps = lorahub_seconds(suite, task, language, steps, scratch)
    generate, generate_batches = generation_seconds(suite, task, language, batch_size)
    return {
        "cell": f"{task}-{language}",
        "loraflow fit": step * loraflow_steps + dev_check * LoraFlowConfig().evaluations,
        "lorahub fit": lorahub / steps * lorahub_steps,
        "generate (per row)": generate * generate_batches,
        "loraflow s/step": step,
        "loraflow s/dev check": dev_check,
        "lorahub s/candidate": lorahub / steps,
        "generate s/batch": generate,
    }


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Project a suite's grid time on this machine from short runs.")
    parser.add_argument("--suite", default="real")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/lora_compose_bench"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cells", default="math-es,code-ru", help="comma list of task-language cells to measure")
    parser.add_argument("--steps", type=int, default=2, help="training steps and LoraHub candidates to time")
    parser.add_argument("--batch-size", type=int, default=None, help="generation batch (default: the suite's)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    arguments = parse_arguments(argv)
    cells = [name.strip().split("-", 1) for name in arguments.cells.split(",") if name.strip()]
    if not cells or any(len(cell) != 2 for cell in cells):
        raise SystemExit(f"--cells {arguments.cells}: expected a comma list of task-language names, e.g. math-es,code-ru")
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    options = SuiteOptions(cache_dir=arguments.cache_dir, device=arguments.device, data_dir=arguments.data_dir)
    suite = load_suite(arguments.suite, options)
    batch_size = arguments.batch_size or suite.generation_batch_size
    with tempfile.TemporaryDirectory() as scratch:
        rows = [measure_cell(suite, task, language, arguments.steps, batch_size, Path(scratch)) for task, language in cells]
    table = pd.DataFrame(rows).set_index("cell")
    print(f"suite {suite.name}, device {next(suite.model.parameters()).device}, {torch.get_num_threads()} threads, "
          f"generation batch {batch_size}; projected seconds per cell:")  # fmt: skip
    print(table.round(1).to_markdown())
    per_cell = table["loraflow fit"] + table["lorahub fit"] + len(GENERATING_ROWS) * table["generate (per row)"]
    cell_count = len(suite.cells)
    print(f"\nprojected grid ({', '.join(GENERATING_ROWS)}) over the suite's {cell_count} cells, from the mean of the "
          f"measured cells: {per_cell.mean() * cell_count / 3600:.1f} h (LoRA-Flow fits "
          f"{table['loraflow fit'].mean() * cell_count / 3600:.1f} h, LoraHub fits "
          f"{table['lorahub fit'].mean() * cell_count / 3600:.1f} h, generation "
          f"{len(GENERATING_ROWS) * table['generate (per row)'].mean() * cell_count / 3600:.1f} h)")  # fmt: skip


if __name__ == "__main__":
    main()
