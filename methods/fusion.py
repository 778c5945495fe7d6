"""`fusion`: task-level weights learned by gradient descent, this project's own baseline between LoraHub and LoRA-Flow.

Not a method of the LoRA-Flow paper ("LoRA Fusion" there is the heading over its Average, LoRA-Hub and LoRA-Flow
rows), so the report prints no paper number beside it (bench/paper_numbers.py).

`h' = h + sum_i w_i delta_h_i` with one weight per adapter shared by every layer and token (static, like `average`),
but `w` is trained on the cell's examples with LoRA-Flow's budget and dev selection. Set against `loraflow`, it
isolates what per-token, per-layer weights add.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from methods.loraflow import LoraFlowTraining
from methods.multi_lora import attach_adapters
from methods.registry import Cell, read_saved_record, register_method
from methods.training import train_parameters

WEIGHTS_FILE = "fusion_weights.safetensors"
CONFIG_FILE = "fusion.json"


@dataclass
class FusionConfig(LoraFlowTraining):
    """LoRA-Flow's training budget and dev selection (the paper trains both the same way); `initial_weights`
    empty means 1/k each, i.e. the fit starts from `average`."""

    initial_weights: tuple[float, ...] = ()


@register_method("fusion")
class Fusion:
    learns = True
    Config = FusionConfig

    def __init__(self, cell: Cell, config: FusionConfig | None = None):
        self.config, self.cell, self.model = config or FusionConfig(), cell, cell.model
        count = len(cell.adapters)
        initial = self.config.initial_weights or tuple(1.0 / count for _ in range(count))
        if len(initial) != count:
            raise ValueError(f"--set fusion.initial_weights: got {len(initial)} weights for {count} adapters")
        device = next(cell.model.parameters()).device
        self.weights = torch.nn.Parameter(torch.tensor(initial, dtype=torch.float32, device=device))
        for slot in attach_adapters(cell.model, cell.adapters):
            slot.value = self.weights  # one vector for every layer: task-level weights
        self.adapter_names = [adapter.name for adapter in cell.adapters]
        self.history: list[dict] = []
        self.trainable_parameter_count = count

    def fit(self) -> None:
        self.history = train_parameters(self.model, self.cell.tokenizer, [self.weights], self.cell.train, self.cell.dev,
                                        self.config.training(), self.cell.seed, "fusion weights",
                                        self.cell.parallel, self.config.dev_accuracy_for(self.cell))  # fmt: skip

    def save(self, directory: Path) -> None:
        save_file({"weights": self.weights.detach().cpu()}, str(directory / WEIGHTS_FILE))
        record = {"adapters": self.adapter_names, "base_model": self.cell.base_model_id,
                  "weights": self.weights.tolist(), "history": self.history}  # fmt: skip
        (directory / CONFIG_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")

    def load(self, directory: Path) -> None:
        record = read_saved_record(directory / CONFIG_FILE, self.cell, "fusion weights")
        with torch.no_grad():
            self.weights.copy_(load_file(str(directory / WEIGHTS_FILE))["weights"])
        self.history = record["history"]
