"""Train a zoo of standard PEFT LoRA adapters on one base model, one dataset per adapter, and write its manifest.

Used by every suite that builds its own zoo (the built-in suite, the real tier on SmolLM2), so all zoos are trained
the same way (`methods.lora_training.train_lora`) and saved as plain PEFT folders any tool can load.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from bench.zoo import ZooEntry, write_zoo
from methods.lora_adapter import save_peft_adapter
from methods.lora_training import LoraSettings, train_lora
from methods.training import TrainingConfig
from tasks.examples import Example


def build_zoo(
    make_base_model: Callable[[], torch.nn.Module],
    tokenizer,
    datasets: dict[ZooEntry, list[Example]],
    lora: LoraSettings,
    training_for: Callable[[ZooEntry], TrainingConfig],
    seed: int,
    base_model_id: str,
    zoo_directory: Path,
) -> dict[str, float]:
    """One adapter per entry, each on a fresh base model from `make_base_model()` with the optimiser settings
    `training_for(entry)`; return seconds per adapter."""
    seconds = {}
    for entry, examples in datasets.items():
        started = time.perf_counter()
        model = make_base_model()
        model.config.name_or_path = model.name_or_path = base_model_id  # the base PEFT's model card names
        peft_model = train_lora(model, tokenizer, examples, [], lora, training_for(entry), seed, base_model_id,
                                description=f"adapter {entry.name}")  # fmt: skip
        save_peft_adapter(peft_model, Path(zoo_directory) / entry.path)
        sort_target_modules(Path(zoo_directory) / entry.path / "adapter_config.json")
        seconds[entry.name] = time.perf_counter() - started
    write_zoo(Path(zoo_directory), base_model_id, list(datasets))
    return seconds


def sort_target_modules(config_path: Path) -> None:
    """PEFT writes `target_modules` in set order, which changes with Python's string hashing from run to run; sorted,
    the same adapter gives the same bytes in every process."""
    config = json.loads(config_path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True))
