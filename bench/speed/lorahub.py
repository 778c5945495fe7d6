"""Seconds per LoraHub search step: a reference-style loop against `methods.lorahub`, same model, examples and budget.

The reference-style loop is modelled on `lorahub/algorithm.py` (lorahub 0.1.0, `get_score`): for every candidate it
builds the composed state dict (`sum_i w_i * state_i` over every LoRA tensor), loads it with
`set_peft_model_state_dict`, and sums the PEFT model's per-batch mean losses divided by the number of examples, one
candidate at a time under `optimizer.minimize`. Its adapter cache holds copies (the wheel's aliasing bug is not
reproduced). Ours (`methods.lorahub`) composes in place and scores blocks of candidates in one forward. Both runs use
the same seeded optimizer, so they see the same candidates as long as their objectives agree.

Run: `python -m bench.speed.lorahub` (see --help); it prints one table per optimizer and the goal for the device.
"""

from __future__ import annotations

import argparse
import copy
import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM

from bench.models import resolve_device
from methods.lora_adapter import WEIGHTS_FILE, load_lora_adapter
from methods.lora_composition import stack_candidate_tensors
from methods.lorahub import LoraHubConfig, candidate_scorer, generation_size, make_optimizer, search_weights
from methods.training import IGNORE_INDEX, EncodedExample, batches

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
PAD_TOKEN_ID, BOS_TOKEN_ID = 0, 1


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time LoraHub's search against a reference-style reload loop.")
    parser.add_argument("--hidden", type=int, default=1024, help="model width d")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--adapters", type=int, default=2, help="candidates (a cell: language + skill)")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--examples", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=96, help="tokens per example, the second half is the target")
    parser.add_argument("--budget", type=int, default=40, help="max_inference_step")
    parser.add_argument("--optimizers", default="NGOpt,CMA", help="comma list of nevergrad optimizer names")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def build_model(arguments: argparse.Namespace, device: torch.device) -> LlamaForCausalLM:
    """A random Llama (Llama-2 proportions: FFN about 8/3 d) in eval mode."""
    torch.manual_seed(arguments.seed)
    feed_forward = 256 * math.ceil(8 * arguments.hidden / 3 / 256)
    config = LlamaConfig(
        vocab_size=arguments.vocab, hidden_size=arguments.hidden, intermediate_size=feed_forward,
        num_hidden_layers=arguments.layers, num_attention_heads=max(1, arguments.hidden // 64),
        max_position_embeddings=max(512, arguments.tokens), tie_word_embeddings=False,
    )  # fmt: skip
    return LlamaForCausalLM(config).to(device).eval().requires_grad_(False)


def write_random_adapters(model, directory: Path, count: int, rank: int, seed: int) -> list[Path]:
    """`count` PEFT adapters (alpha = 2r, every projection) with random A and B, as trained adapters would be saved."""
    generator = torch.Generator().manual_seed(seed)
    names = [name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in PROJECTIONS]
    paths = []
    for index in range(count):
        path = directory / f"adapter{index}"
        tensors = {}
        for name in names:
            module = model.get_submodule(name)
            A = torch.randn(rank, module.in_features, generator=generator) / math.sqrt(module.in_features)
            B = 0.05 * torch.randn(module.out_features, rank, generator=generator)
            tensors[f"base_model.model.{name}.lora_A.weight"] = A
            tensors[f"base_model.model.{name}.lora_B.weight"] = B
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=list(PROJECTIONS), task_type="CAUSAL_LM")
        config.save_pretrained(str(path))
        save_file(tensors, str(path / WEIGHTS_FILE))
        paths.append(path)
    return paths


def random_examples(count: int, tokens: int, vocab: int, seed: int) -> list[EncodedExample]:
    """Examples of exactly `tokens` tokens: a prompt (masked out of the loss), then an equally long target."""
    generator = torch.Generator().manual_seed(seed)
    prompt = tokens // 2
    encoded = []
    for _ in range(count):
        ids = [BOS_TOKEN_ID] + torch.randint(3, vocab, (tokens - 1,), generator=generator).tolist()
        encoded.append(EncodedExample(input_ids=ids, labels=[IGNORE_INDEX] * prompt + ids[prompt:]))
    return encoded


class ForwardClock:
    """Wall time inside the forward passes it wraps (model and loss); synchronises CUDA so the time is real."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.calls = device, 0.0, 0

    def _synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def __enter__(self):
        self._synchronize()
        self.started = time.perf_counter()

    def __exit__(self, *exception):
        self._synchronize()
        self.seconds += time.perf_counter() - self.started
        self.calls += 1

    def wrap(self, function):
        def timed(*args, **kwargs):
            with self:
                return function(*args, **kwargs)

        return timed


@dataclass
class Run:
    seconds: float  # the whole search
    forward_seconds: float
    forwards: int
    optimizer: str
    final_objective: float
    history: list[tuple[np.ndarray, float]] = field(default_factory=list)  # (candidate weights, objective) per step


def reference_search(model, adapter_paths, encoded, config: LoraHubConfig, seed: int, device) -> Run:
    """The reference's loop: compose a state dict, load it, score, one candidate per step."""
    peft_model = PeftModel.from_pretrained(model, str(adapter_paths[0])).eval()
    cache = [load_file(str(path / WEIGHTS_FILE), device=str(device)) for path in adapter_paths]
    batch_list = list(batches(encoded, config.batch_size or len(encoded), PAD_TOKEN_ID, device))
    clock, history = ForwardClock(device), []

    def get_score(weights) -> float:
        composed = {key: sum(float(w) * state[key] for w, state in zip(weights, cache)) for key in cache[0]}
        set_peft_model_state_dict(peft_model, composed)
        with torch.no_grad(), clock:
            loss = sum(peft_model(**batch).loss.detach().float() for batch in batch_list)
            loss = float(loss) / len(encoded)
        objective = loss + 0.05 * sum(abs(w) for w in weights) / len(weights)
        history.append((np.array(weights), objective))
        return objective

    get_score(np.zeros(len(adapter_paths)))  # warm-up, not timed
    history.clear()
    clock.seconds, clock.calls = 0.0, 0
    optimizer = make_optimizer(config, len(adapter_paths), seed)
    started = time.perf_counter()
    recommendation = optimizer.minimize(get_score)
    seconds = time.perf_counter() - started
    steps, forward_seconds = list(history), clock.seconds
    final = get_score(recommendation.value)
    chosen = getattr(optimizer, "optim", optimizer).name
    return Run(seconds, forward_seconds, len(steps), chosen, final, steps)


def our_search(model, adapter_paths, encoded, config: LoraHubConfig, seed: int, device) -> Run:
    """`methods.lorahub`: composition in place, a block of candidates per forward."""
    stacked = stack_candidate_tensors([load_lora_adapter(path) for path in adapter_paths])
    count = len(adapter_paths)
    with candidate_scorer(model, stacked, encoded, PAD_TOKEN_ID, config) as scorer:
        clock = ForwardClock(device)
        scorer.example_losses = clock.wrap(scorer.example_losses)
        scorer(np.zeros((1, count)))  # warm-up, not timed
        clock.seconds, clock.calls = 0.0, 0
        started = time.perf_counter()
        weights, history, chosen = search_weights(scorer, count, config, seed)
        seconds, forward_seconds, forwards = time.perf_counter() - started, clock.seconds, clock.calls
        final = float(scorer(weights[None])[0])
    steps = [(np.array(step["weights"]), step["objective"]) for step in history]
    return Run(seconds, forward_seconds, forwards, chosen, final, steps)


def same_candidate_agreement(reference: Run, ours: Run) -> tuple[int, float]:
    """Steps whose candidates coincide, and the largest objective difference on those steps."""
    same = [(a, b) for (wa, a), (wb, b) in zip(reference.history, ours.history) if np.allclose(wa, wb, atol=1e-6)]
    return len(same), max((abs(a - b) for a, b in same), default=float("nan"))


def print_pair(name: str, block: int, reference: Run, ours: Run, budget: int) -> float:
    """One optimizer's table; returns the speed-up per search step."""
    print(f"\n{name} (resolves to {ours.optimizer}), {block} candidate(s) per forward pass in ours")
    print(f"  {'':16}{'s/step':>9}{'forward s/step':>16}{'outside forward/step':>24}{'final objective':>17}")
    for label, run in (("reference loop", reference), ("ours", ours)):
        outside = run.seconds - run.forward_seconds
        share = 100 * outside / run.seconds
        print(f"  {label:16}{run.seconds / budget:9.4f}{run.forward_seconds / budget:16.4f}"
              f"{1000 * outside / budget:14.2f} ms ({share:4.2f}%){run.final_objective:17.6f}")  # fmt: skip
    same, difference = same_candidate_agreement(reference, ours)
    speedup = reference.seconds / ours.seconds
    print(f"  speed-up {speedup:.2f}x per search step; same candidates at {same}/{budget} steps, "
          f"max |objective difference| there {difference:.2e}; {ours.forwards} forward passes in ours")  # fmt: skip
    return speedup


def print_setup(arguments: argparse.Namespace, model, device: torch.device) -> None:
    parameters = sum(parameter.numel() for parameter in model.parameters()) / 1e6
    threads = f"{torch.get_num_threads()} torch threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    print(f"device {device} ({threads}) | random Llama d={arguments.hidden}, {arguments.layers} layers, "
          f"vocab {arguments.vocab} ({parameters:.1f}M parameters), float32")  # fmt: skip
    print(f"{arguments.adapters} adapters r={arguments.rank} on {', '.join(PROJECTIONS)} | "
          f"{arguments.examples} examples x {arguments.tokens} tokens | budget {arguments.budget} | seed {arguments.seed}")
    print("goal on " + ("a GPU: at least 3x per search step" if device.type == "cuda" else
          "a CPU: never slower than the reference loop, and under 1% of a step outside forward passes"))  # fmt: skip


def print_goals(results: list[tuple[str, float, float]], gpu: bool) -> None:
    """One verdict per optimizer: (name, speed-up per step, % of our step outside forward passes)."""
    print()
    for name, speedup, outside in results:
        if gpu:
            print(f"goal {name}: {speedup:.2f}x per step -> {'met' if speedup >= 3 else 'NOT met'}")
        else:
            verdict = "met" if speedup >= 1 and outside < 1 else "NOT met"
            print(f"goal {name}: {speedup:.2f}x per step, {outside:.2f}% outside forward passes -> {verdict}")


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    # nevergrad's COBYLA and CMA backends warn about settings nevergrad itself chose; they are not ours to fix.
    warnings.filterwarnings("ignore", message="COBYLA: Invalid RHOEND")
    warnings.filterwarnings("ignore", message="orphanated injected solution")
    device = resolve_device(arguments.device)
    model = build_model(arguments, device)
    encoded = random_examples(arguments.examples, arguments.tokens, arguments.vocab, arguments.seed)
    print_setup(arguments, model, device)
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        adapter_paths = write_random_adapters(model, Path(scratch), arguments.adapters, arguments.rank, arguments.seed)
        for name in [part.strip() for part in arguments.optimizers.split(",") if part.strip()]:
            config = LoraHubConfig(optimizer=name, max_inference_step=arguments.budget)
            block = generation_size(make_optimizer(config, arguments.adapters, arguments.seed))
            reference = reference_search(copy.deepcopy(model), adapter_paths, encoded, config, arguments.seed, device)
            ours = our_search(copy.deepcopy(model), adapter_paths, encoded, config, arguments.seed, device)
            speedup = print_pair(name, block, reference, ours, arguments.budget)
            results.append((name, speedup, 100 * (ours.seconds - ours.forward_seconds) / ours.seconds))
    print_goals(results, device.type == "cuda")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
