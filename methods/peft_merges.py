"""PEFT's own merges of several LoRAs into one (`add_weighted_adapter`), one registered row per combination type.

`linear`, `ties`, `dare_*` scale A and B each by sqrt(w) (not LoraHub's operator); `cat` stacks the adapters along
the rank axis, the exact weighted sum of their updates (so equal weights give `average`); `svd` merges the full
deltas and truncates. The merge itself is `peft`'s; only the task-level weights come from here: equal by default,
given (`--set ties.weights=0.7:0.3`), or found by LoraHub's own search (`--set ties.weight_search=lorahub`: nevergrad
on five train examples, LoraHub's defaults, scored with LoraHub's A/B composition), so that merge rules and weight
search can be compared separately. The weights are the fit: saved in `merge.json`, and the merge is redone on load.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model

from methods.lora_adapter import AdapterError, LoraAdapter
from methods.lora_composition import stack_candidate_tensors
from methods.lorahub import LoraHubConfig, search_cell_weights
from methods.registry import Cell, read_saved_record, register_method

MERGED_ADAPTER = "merged"
RESULT_FILE = "merge.json"
WEIGHT_SEARCHES = ("none", "lorahub")


@dataclass
class PeftMergeConfig:
    weights: tuple[float, ...] = ()  # one per candidate adapter; empty: 1/k each (or searched, see weight_search)
    weight_search: str = "none"  # "lorahub": LoraHub's gradient-free search finds the weights instead
    search_budget: int = 40  # candidates the search scores (LoraHub's max_inference_step)
    density: float = 0.5  # share of each delta kept by ties / dare pruning (peft requires one; 0.5 is a middle ground)
    majority_sign_method: str = "total"  # peft's default for ties


def lora_config_of(adapter: LoraAdapter) -> LoraConfig:
    """The adapter's own PEFT config (rank, alpha, targets, rslora, patterns) as a LoraConfig."""
    fields = {field.name for field in dataclasses.fields(LoraConfig)}
    # the zoo's base id is not the model's own name, and nothing saves this config: peft would warn of a rename
    settings = {key: value for key, value in adapter.config.items()
                if key in fields and key not in ("peft_type", "base_model_name_or_path")}  # fmt: skip
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
    learns = True  # the task-level weights (trivial unless searched), so a searched merge is saved and reused
    Config = PeftMergeConfig
    combination_type = "cat"

    @classmethod
    def check_options(cls, config: PeftMergeConfig | None, adapters: list[LoraAdapter]) -> None:
        """Refuse weights that do not give one per candidate adapter, and weights given beside a search. Negative
        weights and any sum are allowed: peft neither normalises them nor needs a sign (task arithmetic subtracts)."""
        config = config or PeftMergeConfig()
        count, search = len(adapters), config.weight_search
        if config.weights and len(config.weights) != count:
            raise ValueError(f"--set {cls.name}.weights: got {len(config.weights)} weights for {count} adapters")
        if search not in WEIGHT_SEARCHES:
            raise ValueError(f"--set {cls.name}.weight_search={search}: valid: {', '.join(WEIGHT_SEARCHES)}")
        if search != "none" and config.weights:
            raise ValueError(f"--set {cls.name}.weights and {cls.name}.weight_search={search}: give one, not both")

    def __init__(self, cell: Cell, config: PeftMergeConfig | None = None):
        self.config, self.cell = config or PeftMergeConfig(), cell
        self.check_options(self.config, cell.adapters)
        count, search = len(cell.adapters), self.config.weight_search
        self.adapter_names = [adapter.name for adapter in cell.adapters]
        self.model = cell.model  # peft wraps it once the weights are known (fit or load)
        self.trainable_parameter_count = count if search != "none" else 0
        self.record: dict = {}

    def fit(self) -> None:
        count = len(self.adapter_names)
        weights, history = list(self.config.weights or [1.0 / count] * count), []
        if self.config.weight_search == "lorahub":
            search = LoraHubConfig(max_inference_step=self.config.search_budget)
            result, _ = search_cell_weights(self.cell, stack_candidate_tensors(self.cell.adapters), search)
            weights, history = result.weights.tolist(), result.history
        self.record = {"adapters": self.adapter_names, "base_model": self.cell.base_model_id, "weights": weights,
                       "weight_search": self.config.weight_search, "history": history}  # fmt: skip
        self._merge(weights)

    def save(self, directory: Path) -> None:
        (Path(directory) / RESULT_FILE).write_text(json.dumps(self.record, indent=1) + "\n", encoding="utf-8")

    def load(self, directory: Path) -> None:
        self.record = read_saved_record(Path(directory) / RESULT_FILE, self.cell, "merge weights")
        self._merge(self.record["weights"])

    @property
    def history(self) -> list[dict]:
        return self.record.get("history", [])

    def _merge(self, weights: list[float]) -> None:
        """peft's `add_weighted_adapter` of the cell's adapters with `weights`, made the active adapter."""
        pruned = "ties" in self.combination_type or "dare" in self.combination_type
        try:
            self.model = peft_model_with(self.cell.model, self.cell.adapters)
            torch.manual_seed(self.cell.seed)  # dare_* prune at random
            self.model.add_weighted_adapter(
                self.adapter_names, weights, MERGED_ADAPTER, combination_type=self.combination_type,
                density=self.config.density if pruned else None, majority_sign_method=self.config.majority_sign_method,
            )  # fmt: skip
        except ValueError as error:
            raise AdapterError(f"{self.name}: peft cannot merge adapters {self.adapter_names}: {error}") from None
        self.model.set_adapter(MERGED_ADAPTER)
        self.model.eval()


# One registered row per combination type of peft's add_weighted_adapter, each a PeftMerge with its type fixed.
for _combination in ("cat", "linear", "svd", "ties", "dare_ties", "dare_linear"):
    register_method(_combination)(type(f"PeftMerge_{_combination}", (PeftMerge,), {"combination_type": _combination}))
