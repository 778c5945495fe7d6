"""PEFT's own merges of several LoRAs into one (`add_weighted_adapter`), one registered row per combination type.

`linear`, `ties`, `dare_*` scale A and B each by sqrt(w) (not LoraHub's operator); `cat` stacks the adapters along
the rank axis, the exact weighted sum of their updates (so equal weights give `average`); `svd` merges the full
deltas and truncates. The merge itself is `peft`'s; only the task-level weights come from here (equal by default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from methods.lora_adapter import AdapterError, LoraAdapter
from methods.registry import Cell, register_method

MERGED_ADAPTER = "merged"


@dataclass
class PeftMergeConfig:
    weights: tuple[float, ...] = ()  # one per candidate adapter; empty: 1/k each
    density: float = 0.5  # share of each delta kept by ties / dare pruning (peft requires one; 0.5 is a middle ground)
    majority_sign_method: str = "total"  # peft's default for ties


def lora_config_of(adapter: LoraAdapter) -> LoraConfig:
    """The adapter's own PEFT config (rank, alpha, targets, rslora, patterns) as a LoraConfig."""
    fields = {field.name for field in dataclasses.fields(LoraConfig)}
    settings = {key: value for key, value in adapter.config.items() if key in fields and key != "peft_type"}
    settings["inference_mode"] = True
    return LoraConfig(**settings)


def peft_model_with(model: torch.nn.Module, adapters: list[LoraAdapter]) -> PeftModel:
    """`model` wrapped by peft with every adapter loaded under its own name (tensors copied, nothing re-read)."""
    peft_model = get_peft_model(model, lora_config_of(adapters[0]), adapter_name=adapters[0].name)
    for adapter in adapters[1:]:
        peft_model.add_adapter(adapter.name, lora_config_of(adapter))
    inner = peft_model.base_model.model
    with torch.no_grad():
        for adapter in adapters:
            for module_name, lora in adapter.modules.items():
                layer = inner.get_submodule(module_name)
                layer.lora_A[adapter.name].weight.copy_(lora.A)
                layer.lora_B[adapter.name].weight.copy_(lora.B)
    return peft_model


class PeftMerge:
    learns = False
    Config = PeftMergeConfig
    combination_type = "cat"

    def __init__(self, cell: Cell, config: PeftMergeConfig | None = None):
        config = config or PeftMergeConfig()
        count = len(cell.adapters)
        weights = list(config.weights or [1.0 / count] * count)
        if len(weights) != count:
            raise ValueError(f"--set {self.name}.weights: got {len(weights)} weights for {count} adapters")
        names = [adapter.name for adapter in cell.adapters]
        try:
            self.model = peft_model_with(cell.model, cell.adapters)
            torch.manual_seed(cell.seed)  # dare_* prune at random
            self.model.add_weighted_adapter(
                names, weights, MERGED_ADAPTER, combination_type=self.combination_type,
                density=config.density if "ties" in self.combination_type or "dare" in self.combination_type else None,
                majority_sign_method=config.majority_sign_method,
            )  # fmt: skip
        except ValueError as error:
            raise AdapterError(f"{self.name}: peft cannot merge adapters {names}: {error}") from None
        self.model.set_adapter(MERGED_ADAPTER)
        self.model.eval()


# One registered row per combination type of peft's add_weighted_adapter, each a PeftMerge with its type fixed.
for _combination in ("cat", "linear", "svd", "ties", "dare_ties", "dare_linear"):
    register_method(_combination)(type(f"PeftMerge_{_combination}", (PeftMerge,), {"combination_type": _combination}))
