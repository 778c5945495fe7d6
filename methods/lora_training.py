"""Train one standard PEFT LoRA adapter (used to build adapter zoos and by the `oracle` method)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from peft import LoraConfig, get_peft_model

from methods.data_parallel import SINGLE_PROCESS, DataParallel
from methods.training import TrainingConfig, train_parameters
from tasks.examples import Example

# LoRA-Flow adapts every attention and MLP projection of each block.
LLAMA_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = LLAMA_PROJECTIONS


def lora_settings_like(adapter) -> LoraSettings:
    """The rank, alpha and target modules of `adapter` (a LoraAdapter), for a new LoRA of the same capacity."""
    return LoraSettings(
        rank=int(adapter.config.get("r", 8)),
        alpha=int(adapter.config.get("lora_alpha", 16)),
        target_modules=tuple(sorted({name.rsplit(".", 1)[-1] for name in adapter.modules})),
    )


def train_lora(
    model: torch.nn.Module,
    tokenizer,
    train: list[Example],
    dev: list[Example],
    lora: LoraSettings,
    training: TrainingConfig,
    seed: int,
    base_model_id: str,
    description: str = "LoRA",
    parallel: DataParallel = SINGLE_PROCESS,
    dev_accuracy: Callable[[torch.nn.Module], float] | None = None,
):
    """Wrap `model` (changed in place) in a PEFT LoRA, train only the LoRA matrices, return the PeftModel."""
    torch.manual_seed(seed)
    config = LoraConfig(
        r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules)
    )
    peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = base_model_id
    parameters = [parameter for parameter in peft_model.parameters() if parameter.requires_grad]
    peft_model.training_history = train_parameters(
        peft_model, tokenizer, parameters, train, dev, training, seed=seed, description=description, parallel=parallel,
        dev_accuracy=dev_accuracy,
    )
    return peft_model
