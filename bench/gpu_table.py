"""The SmolLM2 tier's whole table on one GPU, as one prepared command (README "GPUs").

    python -m bench.gpu_table                                   # both splits, every row, seeds 0, 1, 2
    python -m bench.gpu_table --suites real --limit 40          # the real tier, sized to the time left
    (any run_all.py option, such as --tasks or --set, is passed on)

First it reruns two cells the CPU committed (the skill adapter and LoRA-Flow on held-out math zh, seed 0) into a
scratch folder and prints how far the GPU's scores, completions and gates are from the committed ones: the first run
of the CUDA and bfloat16 paths is checked before the table is trusted. Then it runs the table: rows that learn
nothing and decode greedily once (tests/test_seed_independence.py proves their cells do not depend on the seed),
trained rows at every seed, and the other merges and HydraLoRA at seed 0 on the held-out split. It writes the same
cell files as a CPU run, into its own folder: a bfloat16 base is another input (bench/cell_identity.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from bench.cli import main as run_all

SEED_FREE_ROWS = ("base", "language_lora", "skill_lora", "average", "ties")
TRAINED_ROWS = ("skill_lora_finetuned", "fresh_lora", "lorahub", "fusion", "loraflow", "loraflow_ceiling", "oracle")
SEED_ZERO_ROWS = ("cat", "linear", "svd", "dare_ties", "dare_linear", "xlora", "hydralora", "hydralora_tuned")
SUITES = ("builtin-smollm2-heldout", "builtin-smollm2")
CHECK = {"suite": "builtin-smollm2-heldout", "methods": ("skill_lora", "loraflow"), "task": "math", "language": "zh"}
CPU_RESULTS = Path("results/builtin-smollm2")


def grid_commands(suites: list[str], common: list[str]) -> list[list[str]]:
    """The run_all.py argument lists of the table, most informative first."""
    commands = []
    for suite in suites:
        rows = [(SEED_FREE_ROWS, "0"), (TRAINED_ROWS, "0,1,2")]
        rows += [(SEED_ZERO_ROWS, "0")] if suite.endswith("heldout") else []
        commands += [["--suite", suite, "--methods", ",".join(methods), "--seeds", seeds, *common]
                     for methods, seeds in rows]  # fmt: skip
    return commands


def compare_cells(cpu_out: Path, gpu_out: Path, method: str) -> str:
    """Score, completions and (LoRA-Flow) gate parameters of one cell, CPU against GPU, as one line."""
    relative = Path("cells") / CHECK["suite"] / method / f"{CHECK['task']}-{CHECK['language']}-seed0.json"
    if not (cpu_out / relative).is_file():
        return f"{method}: no committed CPU cell {cpu_out / relative} to compare with"
    cpu, gpu = (json.loads((out / relative).read_text(encoding="utf-8")) for out in (cpu_out, gpu_out))
    same = sum(a["completion"] == b["completion"] for a, b in zip(cpu["generations"], gpu["generations"]))
    line = f"{method}: score CPU {cpu['score']:.1f}, GPU {gpu['score']:.1f}; {same}/{cpu['n']} completions identical"
    gates = Path("state") / CHECK["suite"] / method / f"{CHECK['task']}-{CHECK['language']}-seed0" / "gates.safetensors"
    if (cpu_out / gates).is_file() and (gpu_out / gates).is_file():
        cpu_gates, gpu_gates = load_file(str(cpu_out / gates)), load_file(str(gpu_out / gates))
        largest = max(float((cpu_gates[name].float() - gpu_gates[name].float()).abs().max()) for name in cpu_gates)
        line += f"; gate parameters differ by at most {largest:.2e}"
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", default=",".join(SUITES), help="comma list of suites")
    parser.add_argument("--out", type=Path, default=Path("results/builtin-smollm2-gpu"))
    parser.add_argument("--cpu-results", type=Path, default=CPU_RESULTS, help="committed CPU cells to check against")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="auto", help="auto: bfloat16 where the card has it, else float32")
    parser.add_argument("--batch-size", default="64")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--skip-check", action="store_true", help="do not rerun the two committed CPU cells first")
    arguments, passed_on = parser.parse_known_args(argv)  # any other option (--tasks, --set, ...) goes to run_all.py
    dtype = arguments.dtype
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    common = ["--device", arguments.device, "--dtype", dtype, "--batch-size", arguments.batch_size, *passed_on]
    if not arguments.skip_check:  # full test sets, as the committed cells
        check_out = arguments.out / "check"
        check = ["--suite", CHECK["suite"], "--methods", ",".join(CHECK["methods"]), "--tasks", CHECK["task"],
                 "--langs", CHECK["language"], "--seeds", "0", *common, "--out", str(check_out)]  # fmt: skip
        status = run_all(check)
        for method in CHECK["methods"]:
            print("check against the CPU:", compare_cells(arguments.cpu_results, check_out, method))
        if status:
            return status
    common += ["--out", str(arguments.out)] + (["--limit", str(arguments.limit)] if arguments.limit else [])
    statuses = [run_all(command) for command in grid_commands(arguments.suites.split(","), common)]
    return max(statuses)


if __name__ == "__main__":
    raise SystemExit(main())
