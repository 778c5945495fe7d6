"""`xlora`: peft's X-LoRA (Buehler & Buehler, arXiv 2402.07148), the closest existing dynamic rival to LoRA-Flow.

Per token, a classifier reads the base model's last hidden state (a first forward pass with every adapter off) and
outputs scalings, `softmax(W h)`, for every adapter; a second pass then runs with `h' = h + sum_i s_i delta_h_i`.
Unlike LoRA-Flow's gate, which reads each layer's own input, one classifier decides for all layers from the top.
It runs in `peft` itself: the cell's adapters are written as PEFT folders (scalings folded into B) and loaded through
`XLoraConfig`; only the classifier trains, with LoRA-Flow's budget and dev selection. X-LoRA needs `use_cache=False`,
so generation recomputes the whole sequence twice for every new token. Its per-token scalings are recorded as traces
in LoRA-Flow's format (the classifier's softmax output, one set per layer), so the same plots show both.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import XLoraConfig, get_peft_model
from safetensors.torch import load_file, save_file

from methods.lora_adapter import export_peft_adapter
from methods.fusion_gate import ExampleTrace, example_trace
from methods.loraflow import LoraFlowTraining, stop_token_ids, trace_file_tensors
from methods.registry import Cell, read_saved_record, register_method
from methods.training import train_parameters

CLASSIFIER_FILE = "xlora_classifier.safetensors"
CONFIG_FILE = "xlora.json"
CLASSIFIER_PREFIX = "internal_xlora_classifier."


@dataclass
class XLoraMethodConfig(LoraFlowTraining):
    """LoRA-Flow's training budget; the classifier's own settings are peft's `XLoraConfig` defaults."""

    xlora_depth: int = 1  # one linear layer from the hidden state to the scalings
    xlora_size: int = 2048  # hidden width of deeper classifiers
    layerwise_scalings: bool = False  # False: one set of scalings shared by every layer
    softmax_temperature: float = 1.0
    top_k_lora: int | None = None  # None: dense, every adapter contributes


def classifier_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The X-LoRA classifier's parameters (the only trainable part), by name inside the classifier."""
    return {name.split(CLASSIFIER_PREFIX, 1)[1]: parameter for name, parameter in model.named_parameters()
            if CLASSIFIER_PREFIX in name}  # fmt: skip


@register_method("xlora")
class XLora:
    learns = True
    Config = XLoraMethodConfig

    def __init__(self, cell: Cell, config: XLoraMethodConfig | None = None):
        self.config, self.cell = config or XLoraMethodConfig(), cell
        self.adapter_names = [adapter.name for adapter in cell.adapters]
        cell.model.config.use_cache = False  # X-LoRA refuses a cache: each step reruns the scaling pass
        with tempfile.TemporaryDirectory() as scratch:
            # Keys "0", "1", ...: peft 0.21 loads the experts under those names but activates the dict's keys
            # (fixed upstream by huggingface/peft PR 3421); the order is the cell's adapter order either way.
            folders = {str(index): str(export_peft_adapter(adapter, Path(scratch) / str(index)))
                       for index, adapter in enumerate(cell.adapters)}  # fmt: skip
            xlora_config = XLoraConfig(
                task_type="CAUSAL_LM", hidden_size=cell.model.get_input_embeddings().embedding_dim, adapters=folders,
                xlora_depth=self.config.xlora_depth, xlora_size=self.config.xlora_size,
                layerwise_scalings=self.config.layerwise_scalings, softmax_temperature=self.config.softmax_temperature,
                top_k_lora=self.config.top_k_lora,
            )  # fmt: skip
            device = next(cell.model.parameters()).device
            torch.manual_seed(cell.seed)  # the classifier's initial weights
            self.model = get_peft_model(cell.model, xlora_config).to(device)
        self.classifier = classifier_parameters(self.model)
        self.trainable_parameter_count = sum(parameter.numel() for parameter in self.classifier.values())
        self.history: list[dict] = []
        self.traces: dict[int, ExampleTrace] = {}

    def fit(self) -> None:
        cell = self.cell
        self.history = train_parameters(
            self.model, cell.tokenizer, list(self.classifier.values()), cell.train, cell.dev, self.config.training(),
            seed=cell.seed, description=f"xlora {cell.task}-{cell.language}", parallel=cell.parallel,
            dev_accuracy=self.config.dev_accuracy_for(cell),
        )  # fmt: skip

    def save(self, directory: Path) -> None:
        tensors = {name: parameter.detach().float().cpu().contiguous() for name, parameter in self.classifier.items()}
        save_file(tensors, str(Path(directory) / CLASSIFIER_FILE))
        record = {"adapters": self.adapter_names, "base_model": self.cell.base_model_id, "history": self.history}
        (Path(directory) / CONFIG_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")

    def load(self, directory: Path) -> None:
        record = read_saved_record(Path(directory) / CONFIG_FILE, self.cell, "X-LoRA classifier")
        tensors = load_file(str(Path(directory) / CLASSIFIER_FILE))
        if set(tensors) != set(self.classifier):
            raise ValueError(f"{Path(directory) / CLASSIFIER_FILE}: holds {sorted(tensors)}, need {sorted(self.classifier)}")
        with torch.no_grad():
            for name, parameter in self.classifier.items():
                parameter.copy_(tensors[name])
        self.history = record["history"]

    @contextlib.contextmanager
    def record_weights(self, inputs: dict):
        """Wrap one generate() batch: keep each example's per-token scalings (runner hook).

        Without a cache, the last forward pass of a generation reads every token but the final one, so its scalings
        (peft's `get_latest_scalings`: batch, tokens, layers, adapters; before any top-k) are the whole trace.
        """
        fed: list[torch.Tensor] = []

        def keep_input_ids(module, args, kwargs):
            fed.append(kwargs["input_ids"] if "input_ids" in kwargs else args[0])

        hook = self.cell.model.register_forward_pre_hook(keep_input_ids, with_kwargs=True)
        try:
            yield
        finally:
            hook.remove()
        token_ids = fed[-1].detach().cpu()
        weights = self.model.base_model.get_latest_scalings().detach().float().cpu().permute(2, 0, 1, 3)
        stop_ids, prompt_mask = stop_token_ids(self.cell.tokenizer), inputs["attention_mask"].cpu()
        for row, index in enumerate(inputs["indices"]):
            self.traces[index] = example_trace(token_ids, weights, prompt_mask, row, stop_ids)

    def recorded_weights(self, example_ids: list[str]) -> dict[str, torch.Tensor]:
        """Every recorded example's trace (runner hook), in LoRA-Flow's trace format."""
        return trace_file_tensors(self.traces, self.adapter_names, self.cell.tokenizer, example_ids)
