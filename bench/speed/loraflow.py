"""Speed of LoRA-Flow against the base model, a per-adapter loop, `peft` with both adapters active, and `peft` X-LoRA.

    python -m bench.speed.loraflow --model small,realistic [--repeats 5] [--json out.json]

On one random Llama with two random rank-r PEFT adapters on all seven projections and one batch of prompts, it
measures in one run (repetitions interleaved; ratios taken per repetition, reported as medians: the machine is shared):
- decode tokens/s of every variant: generate(n new tokens) minus generate(1 new token), so prefill is excluded;
- the FLOP limit of LoRA-Flow / base over the same decoding steps: base FLOPs / LoRA-Flow FLOPs, counted by torch's
  FlopCounterMode (base matmuls + LoRA matmuls + gate projections);
- gate-training tokens/s against plain LoRA training (one rank-r peft LoRA, its A and B trainable), same batch;
- LoRA-Flow against peft X-LoRA, which needs `use_cache=False` and so recomputes the whole sequence (twice: a
  scaling pass, then the adapted pass) at every step: whole generate() calls, prefill included.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from peft import LoraConfig, PeftModel, XLoraConfig, get_peft_model
from torch import nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

from methods.lora_adapter import load_lora_adapter
from methods.loraflow import LoraFlow, LoraFlowConfig
from methods.multi_lora import MultiLoraLinear
from methods.registry import Cell
from methods.training import IGNORE_INDEX, summed_target_loss

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class BenchShape:
    """A random Llama and the workload run on it."""

    hidden: int
    layers: int
    intermediate: int
    heads: int
    vocab: int
    rank: int
    batch: int
    prompt_tokens: int
    new_tokens: int
    xlora_new_tokens: int  # X-LoRA recomputes the whole sequence per step: fewer new tokens only if it is too slow


SHAPES = {
    "small": BenchShape(hidden=128, layers=4, intermediate=352, heads=4, vocab=1000, rank=8, batch=4, prompt_tokens=32,
                        new_tokens=32, xlora_new_tokens=32),
    # Llama-like proportions: d=1024, FFN 2.75 d, 64-dim heads, a 32k vocabulary.
    "realistic": BenchShape(hidden=1024, layers=8, intermediate=2816, heads=16, vocab=32000, rank=16, batch=8,
                            prompt_tokens=64, new_tokens=48, xlora_new_tokens=48),
}  # fmt: skip


def build_base(shape: BenchShape, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.heads,
        max_position_embeddings=1024, tie_word_embeddings=False,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval().requires_grad_(False)


def save_random_adapters(base: nn.Module, shape: BenchShape, directory: Path, count: int = 2) -> list[Path]:
    """PEFT adapter folders with random A and random (non-zero) B on every projection."""
    paths = []
    for index in range(count):
        torch.manual_seed(100 + index)
        rank = shape.rank
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=PROJECTIONS, init_lora_weights=False)
        model = get_peft_model(copy.deepcopy(base), config)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.02)
        paths.append(directory / f"adapter{index}")
        model.save_pretrained(str(paths[-1]))
    return paths


class PerAdapterLoopLinear(nn.Module):
    """The unfused form of a MultiLoraLinear: 2 matmuls per adapter, `h + sum_i w_i s_i B_i A_i x` (same layout)."""

    def __init__(self, fused: MultiLoraLinear):
        super().__init__()
        self.base, self.weights, self.parts = fused.base, fused.weights, []
        for adapter in fused.rank_owner.unique().tolist():
            rows = (fused.rank_owner == adapter).nonzero().flatten()
            A_t, B_t = fused.stacked_A_t[:, rows].contiguous(), fused.stacked_B_t[rows].contiguous()
            self.parts.append((adapter, A_t, B_t, float(fused.rank_scale[rows[0]])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output = self.base(x)
        for adapter, A_t, B_t, scale in self.parts:
            output = output + self.weights.value[..., adapter : adapter + 1] * scale * torch.matmul(x @ A_t, B_t)
        return output


def loraflow_model(base: nn.Module, adapter_paths: list[Path], loop: bool = False) -> LoraFlow:
    """LoRA-Flow on a copy of `base` with small random gates (weights vary per token), optionally unfused."""
    adapters = [load_lora_adapter(path) for path in adapter_paths]
    cell = Cell(model=copy.deepcopy(base), tokenizer=None, adapters=adapters, train=[], dev=[], seed=0)
    method = LoraFlow(cell, LoraFlowConfig(weight_init_std=0.02))
    if loop:
        for name, module in list(method.model.named_modules()):
            if isinstance(module, MultiLoraLinear):
                parent_name, _, attribute = name.rpartition(".")
                setattr(method.model.get_submodule(parent_name), attribute, PerAdapterLoopLinear(module))
    return method


def peft_both_active(base: nn.Module, adapter_paths: list[Path]) -> nn.Module:
    """peft's LoraModel with both adapters active at once: the static sum of their updates, one loop per adapter."""
    model = PeftModel.from_pretrained(copy.deepcopy(base), str(adapter_paths[0]), adapter_name="first")
    model.load_adapter(str(adapter_paths[1]), adapter_name="second")
    model.base_model.set_adapter(["first", "second"])
    return model.eval().requires_grad_(False)


def peft_xlora(base: nn.Module, adapter_paths: list[Path], hidden: int) -> nn.Module:
    """peft's X-LoRA on the same adapters, per-layer scalings (closest to LoRA-Flow); it needs use_cache=False."""
    model = copy.deepcopy(base)
    model.config.use_cache = False
    config = XLoraConfig(task_type="CAUSAL_LM", hidden_size=hidden, layerwise_scalings=True,
                         adapters={str(i): str(path) for i, path in enumerate(adapter_paths)})  # fmt: skip
    return get_peft_model(model, config).eval()


def timed(work: Callable[[], object]) -> dict[str, float]:
    """Wall and process-CPU seconds of `work()`. With one torch thread, CPU time is what other processes on a shared
    machine disturb least (they still share caches and memory bandwidth), so ratios are judged on it."""
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def generate_timed(model: nn.Module, inputs: dict, new_tokens: int, use_cache: bool = True) -> dict[str, float]:
    """Times of one greedy generate() of exactly `new_tokens` tokens per row."""
    settings = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        return timed(lambda: model.generate(**inputs, **settings, use_cache=use_cache))


def generate_flops(model: nn.Module, inputs: dict, new_tokens: int) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False, pad_token_id=0)
    return counter.get_total_flops()


def interleaved(runs: dict[str, Callable], repeats: int, description: str, warmups=None) -> dict[str, dict]:
    """Every run once per repetition, in turn, after one untimed warm-up each (`warmups` or the run itself).

    Returns seconds as {clock: {run name: [one per repetition]}}.
    """
    for run in (warmups or runs).values():
        run()
    seconds: dict[str, dict[str, list[float]]] = {clock: {name: [] for name in runs} for clock in ("cpu", "wall")}
    for _ in tqdm(range(repeats), desc=description, leave=False):
        for name, run in runs.items():
            for clock, value in run().items():
                seconds[clock][name].append(value)
    return seconds


def paired_ratio(seconds: dict[str, list[float]], faster: str, slower: str) -> float:
    """Median over repetitions of speed(faster) / speed(slower), i.e. time(slower) / time(faster)."""
    return statistics.median(b / a for a, b in zip(seconds[faster], seconds[slower]))


def summarize(seconds: dict[str, dict], tokens: int, ratios: dict[str, tuple[str, str]]) -> dict:
    """Per clock: median tokens/s of every run, and the median paired ratio named by each `ratios` entry."""
    summary = {}
    for clock, by_name in seconds.items():
        speeds = {name: tokens / statistics.median(times) for name, times in by_name.items()}
        summary[clock] = {"tokens_per_second": speeds, "seconds": by_name}
        summary[clock].update({label: paired_ratio(by_name, *pair) for label, pair in ratios.items()})
    return summary


def decode_only(seconds: dict[str, dict], variants: list[str]) -> dict[str, dict]:
    """Per clock and repetition, generate(new tokens) minus generate(1 token): the decoding steps alone."""
    def differences(by_name: dict[str, list[float]], name: str) -> list[float]:
        return [full - first for full, first in zip(by_name[name], by_name[f"{name} prefill"])]

    return {clock: {name: differences(by_name, name) for name in variants} for clock, by_name in seconds.items()}


def training_step(model: nn.Module, parameters: list[nn.Parameter], batch: dict) -> Callable[[], dict]:
    """One timed AdamW step (forward, loss on the answer tokens, backward, update) of `parameters`."""
    optimizer = torch.optim.AdamW(parameters, lr=1e-4)

    def step() -> None:
        loss, tokens = summed_target_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        (loss / tokens).backward()
        optimizer.step()

    return lambda: timed(step)


def plain_lora(base: nn.Module, shape: BenchShape) -> tuple[nn.Module, list[nn.Parameter]]:
    """One trainable rank-r peft LoRA on every projection: what the gate's training cost is compared with."""
    config = LoraConfig(r=shape.rank, lora_alpha=2 * shape.rank, target_modules=PROJECTIONS)
    model = get_peft_model(copy.deepcopy(base), config)
    return model, [parameter for parameter in model.parameters() if parameter.requires_grad]


def prompts(shape: BenchShape, seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, shape.vocab, (shape.batch, shape.prompt_tokens), generator=generator)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def training_batch(shape: BenchShape, seed: int = 1) -> dict:
    """Prompt + answer sequences with the loss on the answer tokens, as in gate training."""
    generator = torch.Generator().manual_seed(seed)
    length = shape.prompt_tokens + shape.new_tokens
    input_ids = torch.randint(3, shape.vocab, (shape.batch, length), generator=generator)
    labels = input_ids.clone()
    labels[:, : shape.prompt_tokens] = IGNORE_INDEX
    return {"input_ids": input_ids, "labels": labels, "attention_mask": torch.ones_like(input_ids)}


def measure_decoding(shape: BenchShape, base: nn.Module, paths: list[Path], repeats: int) -> dict:
    """Decode-only times (generate minus prefill, interleaved) of base, LoRA-Flow fused and looped, and peft with
    both adapters active; the FLOP limit over the same decoding steps."""
    models = {
        "base": base,
        "loraflow": loraflow_model(base, paths).model,
        "loraflow_loop": loraflow_model(base, paths, loop=True).model,
        "peft_both_active": peft_both_active(base, paths),
    }
    inputs, new = prompts(shape), shape.new_tokens
    runs = {}
    for name, model in models.items():
        runs[name] = lambda model=model: generate_timed(model, inputs, new)
        runs[f"{name} prefill"] = lambda model=model: generate_timed(model, inputs, 1)
    seconds = decode_only(interleaved(runs, repeats, "decode"), list(models))
    ratios = {"loraflow_over_base": ("loraflow", "base"), "loraflow_over_loop": ("loraflow", "loraflow_loop"),
              "loraflow_over_peft_both_active": ("loraflow", "peft_both_active")}  # fmt: skip
    summary = summarize(seconds, shape.batch * (new - 1), ratios)
    flops = {name: generate_flops(models[name], inputs, new) - generate_flops(models[name], inputs, 1)
             for name in ("base", "loraflow")}  # fmt: skip
    return {**summary, "flops": flops, "flop_limit": flops["base"] / flops["loraflow"]}


def measure_xlora(shape: BenchShape, base: nn.Module, paths: list[Path], repeats: int) -> dict:
    """generate() time of LoRA-Flow (KV cache) against peft X-LoRA (no cache, two passes per token), prefill
    included, and of the base model as that ratio's ceiling; skipped, with the reason, when peft refuses the model."""
    try:
        xlora = peft_xlora(base, paths, shape.hidden)
    except Exception as error:  # noqa: BLE001 - any refusal by peft means the column is skipped, with the reason
        return {"skipped": f"peft X-LoRA cannot take this model: {type(error).__name__}: {error}"}
    fused, inputs, new = loraflow_model(base, paths).model, prompts(shape), shape.xlora_new_tokens
    runs = {
        "base": lambda: generate_timed(base, inputs, new),
        "loraflow": lambda: generate_timed(fused, inputs, new),
        "xlora": lambda: generate_timed(xlora, inputs, new, use_cache=False),
    }
    warmups = {**runs, "xlora": lambda: generate_timed(xlora, inputs, 1, use_cache=False)}
    seconds = interleaved(runs, repeats, "X-LoRA", warmups)
    ratios = {"loraflow_over_xlora": ("loraflow", "xlora"), "base_over_xlora": ("base", "xlora")}
    return {**summarize(seconds, shape.batch * new, ratios), "new_tokens": new}


def measure_training(shape: BenchShape, base: nn.Module, paths: list[Path], repeats: int) -> dict:
    """Interleaved training steps: LoRA-Flow gates (two frozen adapters) against one trainable plain LoRA."""
    gated = loraflow_model(base, paths)
    lora, lora_parameters = plain_lora(base, shape)
    gated.model.train(), lora.train()
    batch = training_batch(shape)
    runs = {
        "gates": training_step(gated.model, gated.gate_parameters(), batch),
        "plain_lora": training_step(lora, lora_parameters, batch),
    }
    seconds = interleaved(runs, repeats, "train")
    summary = summarize(seconds, batch["input_ids"].numel(), {"gates_over_plain_lora": ("gates", "plain_lora")})
    counts = {
        "gate_parameters": gated.trainable_parameter_count,
        "plain_lora_parameters": sum(parameter.numel() for parameter in lora_parameters),
    }
    return {**summary, **counts}


def run_benchmark(name: str, repeats: int, xlora_repeats: int) -> dict:
    shape = SHAPES[name]
    base = build_base(shape)
    with tempfile.TemporaryDirectory() as directory:
        paths = save_random_adapters(base, shape, Path(directory))
        return {
            "model": name,
            "shape": asdict(shape),
            "threads": torch.get_num_threads(),
            "repeats": repeats,
            "decoding": measure_decoding(shape, base, paths, repeats),
            "training": measure_training(shape, base, paths, repeats),
            "xlora": measure_xlora(shape, base, paths, xlora_repeats),
        }


# The goals, judged on CPU time.
GOALS = {"share_of_flop_limit": 0.9, "loraflow_over_peft_both_active": 0.95, "gates_over_plain_lora": 0.8,
         "loraflow_over_xlora": 20.0}  # fmt: skip


def ratio_line(label: str, section: dict, key: str, goal_key: str | None = None, limit: float = 1.0) -> str:
    """`label  cpu-ratio (wall wall-ratio)`, divided by `limit`, with the goal met or missed on the CPU-time value."""
    cpu, wall = section["cpu"][key] / limit, section["wall"][key] / limit
    line = f"  {label:<44} {cpu:7.3f}  (wall clock {wall:.3f})"
    if goal_key:
        line += f"  {'met' if cpu >= GOALS[goal_key] else 'MISSED'}: goal >= {GOALS[goal_key]:g}"
    return line


def speed_lines(section: dict) -> list[str]:
    return [
        f"  {name:<24} {speed:9.1f}  (wall clock {section['wall']['tokens_per_second'][name]:.1f})"
        for name, speed in section["cpu"]["tokens_per_second"].items()
    ]


def report(result: dict) -> list[str]:
    """The measured speeds and the ratios against their goals, as printable lines."""
    shape, decoding, training, xlora = result["shape"], result["decoding"], result["training"], result["xlora"]
    lines = [
        f"== model '{result['model']}': random Llama d={shape['hidden']}, {shape['layers']} layers, FFN "
        f"{shape['intermediate']}, vocab {shape['vocab']}; 2 adapters of rank {shape['rank']} on 7 projections; batch "
        f"{shape['batch']}, {shape['prompt_tokens']}-token prompts, {shape['new_tokens']} new tokens; "
        f"{result['threads']} torch thread(s); {result['repeats']} interleaved repetitions; CPU-time medians",
        f"decode tokens/s (generate({shape['new_tokens']} new tokens) minus generate(1 new token)):",
        *speed_lines(decoding),
        f"training tokens/s ({training['gate_parameters']} gate vs {training['plain_lora_parameters']} LoRA "
        "parameters):",
        *speed_lines(training),
        f"ratios (median of per-repetition ratios); FLOP limit of LoRA-Flow / base = {decoding['flop_limit']:.3f}",
        ratio_line("LoRA-Flow / base", decoding, "loraflow_over_base"),
        ratio_line("LoRA-Flow / base, as a share of the limit", decoding, "loraflow_over_base",
                   "share_of_flop_limit", decoding["flop_limit"]),  # fmt: skip
        ratio_line("LoRA-Flow fused / per-adapter loop", decoding, "loraflow_over_loop"),
        ratio_line("LoRA-Flow / peft, both adapters active", decoding, "loraflow_over_peft_both_active",
                   "loraflow_over_peft_both_active"),  # fmt: skip
        ratio_line("gate training / plain LoRA training", training, "gates_over_plain_lora", "gates_over_plain_lora"),
    ]
    if "skipped" in xlora:
        return lines + [f"  LoRA-Flow / peft X-LoRA: skipped, {xlora['skipped']}"]
    speeds = xlora["cpu"]["tokens_per_second"]
    return lines + [
        ratio_line("LoRA-Flow / peft X-LoRA (whole generate())", xlora, "loraflow_over_xlora", "loraflow_over_xlora"),
        ratio_line("base without adapters / peft X-LoRA (ceiling)", xlora, "base_over_xlora"),
        f"    ({xlora['new_tokens']} new tokens, prefill included; X-LoRA with use_cache=False; tokens/s: base "
        f"{speeds['base']:.1f}, LoRA-Flow {speeds['loraflow']:.1f}, X-LoRA {speeds['xlora']:.2f})",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LoRA-Flow speed against base, a per-adapter loop, peft and X-LoRA.")
    parser.add_argument("--model", default="small,realistic", help=f"comma list of: {', '.join(SHAPES)}")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions of every measurement")
    parser.add_argument("--xlora-repeats", type=int, default=1, help="repetitions of the (slow) X-LoRA comparison")
    parser.add_argument("--json", type=Path, default=None, help="also write all measurements to this JSON file")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 by default: on a shared machine, threads waiting on each other's "
                             "descheduled peers slowed small ops up to 60x here")  # fmt: skip
    arguments = parser.parse_args(argv)
    names = [name.strip() for name in arguments.model.split(",") if name.strip()]
    unknown = [name for name in names if name not in SHAPES]
    if unknown or not names or arguments.repeats < 1 or arguments.xlora_repeats < 1:
        parser.error(f"--model: unknown {unknown}; valid: {', '.join(SHAPES)}" if unknown else "nothing to run")
    torch.set_num_threads(arguments.threads)
    results = []
    for name in names:
        results.append(run_benchmark(name, arguments.repeats, arguments.xlora_repeats))
        print("\n".join(report(results[-1])), flush=True)
    if arguments.json:
        arguments.json.parent.mkdir(parents=True, exist_ok=True)
        arguments.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
