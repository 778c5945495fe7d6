"""Fine-tuning baselines: the cell's few examples spent on a LoRA itself instead of on a way of combining LoRAs.

`skill_lora_finetuned`: the cell's skill adapter, trained further on the cell's train split; `fresh_lora`: a new
LoRA of the skill adapter's rank, alpha and target modules, trained from PEFT's initialisation (A random, B = 0) on
the same examples. Both with LoRA-Flow's budget and dev selection (methods/loraflow.py `LoraFlowTraining`), so each
sees exactly what LoRA-Flow's gates see. Not methods of any paper: they answer whether a composition method beats
simply fine-tuning on the data it was given (on templated data that covers the test's kinds, it may not).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel, get_peft_model

from methods.lora_adapter import save_peft_adapter
from methods.lora_training import lora_settings_like, train_lora
from methods.loraflow import LoraFlowTraining
from methods.peft_merges import lora_config_of
from methods.registry import Cell, register_method
from methods.training import train_parameters


@dataclass
class FinetunedLoraConfig(LoraFlowTraining):
    """LoRA-Flow's training budget, optimiser and dev selection, unchanged."""


def skill_adapter_as_peft(cell: Cell) -> PeftModel:
    """`cell.model` wrapped by peft with the cell's skill adapter as its trainable `default` adapter."""
    skill = cell.adapters[-1]
    config = lora_config_of(skill)
    config.inference_mode = False
    peft_model = get_peft_model(cell.model, config)
    peft_model.peft_config["default"].base_model_name_or_path = cell.base_model_id
    inner = peft_model.base_model.model
    with torch.no_grad():
        for module_name, lora in skill.modules.items():
            layer = inner.get_submodule(module_name)
            layer.lora_A["default"].weight.copy_(lora.A)
            layer.lora_B["default"].weight.copy_(lora.B)
    return peft_model


class FinetunedLora:
    """What both rows share: a trained PEFT LoRA, saved and loaded as a PEFT adapter folder."""

    learns = True
    Config = FinetunedLoraConfig

    def __init__(self, cell: Cell, config: FinetunedLoraConfig | None = None):
        self.cell, self.config = cell, config or FinetunedLoraConfig()
        self.model = cell.model
        self.history: list[dict] = []
        self.trainable_parameter_count = 0

    def _finish(self, model: PeftModel) -> None:
        self.model = model.eval()
        self.trainable_parameter_count = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def save(self, directory: Path) -> None:
        save_peft_adapter(self.model, directory)

    def load(self, directory: Path) -> None:
        self.model = PeftModel.from_pretrained(self.cell.model, str(directory)).eval()


@register_method("skill_lora_finetuned")
class SkillLoraFinetuned(FinetunedLora):
    def fit(self) -> None:
        model = skill_adapter_as_peft(self.cell)
        parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
        self.history = train_parameters(model, self.cell.tokenizer, parameters, self.cell.train, self.cell.dev,
                                        self.config.training(), self.cell.seed, "skill LoRA fine-tuning",
                                        self.cell.parallel, self.config.dev_accuracy_for(self.cell))  # fmt: skip
        self._finish(model)


@register_method("fresh_lora")
class FreshLora(FinetunedLora):
    def fit(self) -> None:
        model = train_lora(self.cell.model, self.cell.tokenizer, self.cell.train, self.cell.dev,
                           lora_settings_like(self.cell.adapters[-1]), self.config.training(),
                           self.cell.seed, self.cell.base_model_id, "fresh LoRA", self.cell.parallel,
                           self.config.dev_accuracy_for(self.cell))  # fmt: skip
        self.history = model.training_history
        self._finish(model)
