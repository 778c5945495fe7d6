"""Train a zoo of standard PEFT LoRA adapters on one base model, one dataset per adapter, and write its manifest.

Used by every suite that builds its own zoo (the built-in suite, the real tier on SmolLM2), so all zoos are trained
the same way (`methods.lora_training.train_lora`) and saved as plain PEFT folders any tool can load.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from bench.zoo import ZooEntry, write_zoo
from methods.lora_training import LoraSettings, train_lora
from methods.training import TrainingConfig
from tasks.examples import Example


def build_zoo(
    make_base_model: Callable[[], torch.nn.Module],
    tokenizer,
    datasets: dict[ZooEntry, list[Example]],
    lora: LoraSettings,
    training: TrainingConfig | Callable[[ZooEntry], TrainingConfig],
    seed: int,
    base_model_id: str,
    zoo_directory: Path,
) -> dict[str, float]:
    """One adapter per entry, each on a fresh base model from `make_base_model()`; return seconds per adapter.

    `training` is one optimiser setting for every adapter, or a function giving each entry its own.
    """
    training_for = training if callable(training) else lambda entry: training
    seconds = {}
    for entry, examples in datasets.items():
        started = time.perf_counter()
        peft_model = train_lora(make_base_model(), tokenizer, examples, [], lora, training_for(entry), seed,
                                base_model_id, description=f"adapter {entry.name}")  # fmt: skip
        peft_model.save_pretrained(str(Path(zoo_directory) / entry.path))
        seconds[entry.name] = time.perf_counter() - started
    write_zoo(Path(zoo_directory), base_model_id, list(datasets))
    return seconds
