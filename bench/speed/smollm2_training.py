"""Where the SmolLM2 tier's time and memory go, and what each lever buys, measured side by side in one run.

    python -m bench.speed.smollm2_training [--suite builtin-smollm2-heldout] [--task math] [--lang zh] [--steps 6]

LoRA-Flow's model for one cell (the tier's costliest trained row, untrained gates) on the same length-grouped
batches of the cell's train split, in LoRA-Flow's batch size. Phases: training steps (forward and backward to the
gates, LoRA dropout on) with the vocabulary projection at every position and dropout masks from torch's CPU generator
(before), at the target positions only, then with masks from PCG64 (both the defaults now), and the latter under
bfloat16 autocast; the dev-loss pass; generation of a few test prompts. Beside each phase: seconds, training
throughput as a share of this CPU's matmul peak measured in the same run (float32 peak for float32 steps, bfloat16
peak under autocast; FLOPs counted as 2 x 2 x parameters x tokens, forward plus the input gradients of frozen
weights) and peak resident memory (VmHWM, reset before each phase). Then how far bfloat16's target-position logits
are from float32's. Goals (issue 23): throughput >= 0.5 of peak, <= 3 GB resident in every phase.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import torch

import bench.builtin_suite  # noqa: F401  (registers the built-in suites)
from bench.generation import generate_completions
from bench.grid import GridSpec, load_grid, make_cell
from bench.suites import SuiteOptions
from methods.multi_lora import MultiLoraLinear
from methods.training import IGNORE_INDEX, collate, encode_example, length_grouped_order, mean_target_loss, \
    summed_target_loss  # fmt: skip

MATMUL_SIZE = 2048


def reset_peak_memory() -> None:
    """Start a new peak of resident memory for this process (Linux: writing 5 to clear_refs resets VmHWM)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def matmul_peak(dtype: torch.dtype, repeats: int = 8) -> float:
    """FLOP/s of a square matmul at this process's thread count."""
    a, b = (torch.randn(MATMUL_SIZE, MATMUL_SIZE).to(dtype) for _ in range(2))
    torch.mm(a, b)  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    return 2 * MATMUL_SIZE**3 * repeats / (time.perf_counter() - started)


def step_flops(model, batch: dict[str, torch.Tensor], target_only: bool) -> float:
    """2 x 2 x parameters x tokens: the layers' (and adapters') parameters at every position, the vocabulary
    projection at the positions it runs at."""
    head = model.get_output_embeddings().weight.numel()
    total = sum(parameter.numel() for parameter in model.parameters())  # a tied embedding once
    embedding = 0 if model.config.tie_word_embeddings else model.get_input_embeddings().weight.numel()
    rows, length = batch["input_ids"].shape
    kept = int((batch["labels"][:, 1:] != IGNORE_INDEX).any(dim=0).sum()) if target_only else length
    return 4.0 * ((total - head - embedding) * rows * length + head * rows * kept)


@contextlib.contextmanager
def torch_generator_masks(model):
    """The adapters' dropout masks drawn as before, one float per entry from torch's CPU generator (mt19937)."""
    dropout = next(module.dropout for module in model.modules() if isinstance(module, MultiLoraLinear))
    generator = torch.Generator().manual_seed(dropout.seed)
    dropout.keep_mask = lambda shape, device: torch.rand(shape, generator=generator) >= dropout.probability
    try:
        yield
    finally:
        del dropout.keep_mask  # the class's own method again


def time_steps(model, batches: list[dict], target_only: bool, autocast: bool) -> tuple[float, float, float]:
    """Seconds per training step, FLOP per step and peak resident GB over `batches`."""
    reset_peak_memory()
    flops, started = 0.0, time.perf_counter()
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            loss, tokens = summed_target_loss(model, batch, target_only=target_only)
        (loss / tokens).backward()
        model.zero_grad(set_to_none=True)
        flops += step_flops(model, batch, target_only)
    seconds = (time.perf_counter() - started) / len(batches)
    return seconds, flops / len(batches), peak_memory_gb()


@torch.no_grad()
def logit_agreement(model, batch: dict[str, torch.Tensor]) -> tuple[float, float]:
    """(share of target positions whose argmax agrees, largest absolute logit difference): bfloat16 against float32."""
    labels = batch["labels"][:, 1:]
    keep = (labels != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "logits_to_keep": keep}
    full = model(**inputs).logits.float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = model(**inputs).logits.float()
    targets = labels[:, keep] != IGNORE_INDEX
    agree = (full.argmax(-1) == half.argmax(-1))[targets].float().mean()
    return float(agree), float((full - half).abs()[targets].max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="builtin-smollm2-heldout")
    parser.add_argument("--task", default="math")
    parser.add_argument("--lang", default="zh")
    parser.add_argument("--steps", type=int, default=6, help="training steps timed per variant")
    parser.add_argument("--prompts", type=int, default=8, help="test prompts generated")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/lora_compose_bench"))
    arguments = parser.parse_args()
    spec = GridSpec(suite=arguments.suite, methods=["loraflow"], tasks=[arguments.task], languages=[arguments.lang],
                    seeds=[0], out=Path("/nonexistent"), suite_options=SuiteOptions(cache_dir=arguments.cache_dir,
                                                                                     device="cpu"))  # fmt: skip
    grid = load_grid(spec)
    method = grid.methods["loraflow"](make_cell(grid.suite, arguments.task, arguments.lang, 0, Path("/nonexistent")),
                                      grid.configs["loraflow"])  # fmt: skip
    model, tokenizer, training = method.model, grid.suite.tokenizer, grid.configs["loraflow"].training()
    for parameter in method.gate_parameters():
        parameter.requires_grad_(True)
    model.train()
    encoded = [encode_example(tokenizer, example, training.max_length) for example in method.cell.train]
    order = length_grouped_order(encoded, training.batch_size, torch.Generator().manual_seed(0))[::-1]
    batches = [collate([encoded[i] for i in order[start : start + training.batch_size]], tokenizer.pad_token_id,
                       torch.device("cpu")) for start in range(0, arguments.steps * training.batch_size,
                                                               training.batch_size)]  # fmt: skip
    peaks = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    print(f"{arguments.suite} {arguments.task}-{arguments.lang}, LoRA-Flow batch {training.batch_size}, "
          f"{torch.get_num_threads()} threads; matmul peak {peaks['float32'] / 1e9:.0f} GFLOP/s float32, "
          f"{peaks['bfloat16'] / 1e9:.0f} GFLOP/s bfloat16")  # fmt: skip
    print(f"{'phase':44} {'s/step':>8} {'share of peak':>14} {'peak RSS GB':>12}")
    time_steps(model, batches[:1], True, False)  # warm-up: the first variant is not charged for cold caches
    baseline = None
    for name, target_only, torch_masks, autocast in (
        ("train step, full projection (before)", False, True, False),
        ("train step, target positions only", True, True, False),
        ("train step, target only + PCG64 masks (now)", True, False, False),
        ("train step, now + bf16 autocast", True, False, True),
    ):
        with torch_generator_masks(model) if torch_masks else contextlib.nullcontext():
            seconds, flops, memory = time_steps(model, batches, target_only, autocast)
        baseline = baseline or seconds
        share = flops / seconds / peaks["bfloat16" if autocast else "float32"]
        print(f"{name:44} {seconds:8.2f} {share:14.2f} {memory:12.2f}   x{baseline / seconds:.2f} against before")
    model.eval()
    reset_peak_memory()
    started = time.perf_counter()
    dev = method.cell.dev[:16]
    mean_target_loss(model, tokenizer, dev, max_length=training.max_length)
    print(f"{'dev loss, ' + str(len(dev)) + ' examples':44} {time.perf_counter() - started:8.2f} {'':14} "
          f"{peak_memory_gb():12.2f}   (s per pass)")  # fmt: skip
    reset_peak_memory()
    prompts = [example.prompt for example in method.cell.dev[: arguments.prompts]]
    started = time.perf_counter()
    generate_completions(model, tokenizer, prompts, *grid.suite.answer_limits(arguments.task),
                         batch_size=grid.suite.generation_batch_size)  # fmt: skip
    print(f"{'generation, ' + str(len(prompts)) + ' prompts':44} {(time.perf_counter() - started) / len(prompts):8.2f}"
          f" {'':14} {peak_memory_gb():12.2f}   (s per prompt)")  # fmt: skip
    agree, largest = logit_agreement(model, batches[0])
    print(f"bfloat16 autocast against float32 at target positions: argmax agrees on {100 * agree:.1f} %, largest "
          f"logit difference {largest:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
