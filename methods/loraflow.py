"""`loraflow`: LoRA-Flow (Wang et al., ACL 2024, arXiv 2402.11455): dynamic, per-token, per-layer LoRA fusion.

The cell's k frozen adapters (language, then skill) sit on every adapted projection; each decoder layer l has a gate
`w^l_t = softmax(W^l x^l_t) + b^l` (methods/fusion_gate.py) whose weights mix that layer's adapters for token t:
`h' = h + sum_i w^l_{t,i} delta_h_i` (methods/multi_lora.py, fused into 2 matmuls). Only W^l and b^l train
(layers * (k*d + k) parameters), on the cell's few training examples, with the loss on the answer tokens; the gate
with the lowest dev loss (or, as officially, the best dev accuracy) is kept. During generation the weights of every
token and layer are recorded for plots.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from methods.fusion_gate import (
    ExampleTrace,
    FusionGate,
    FusionWeightRecorder,
    example_trace,
    install_gates,
    pack_strings,
    trace_tensors,
)
from methods.multi_lora import AdapterInputDropout, attach_adapters, find_decoder_layers
from methods.registry import Cell, register_method
from methods.released_gates import read_released_gates, released_gate_path
from methods.training import TrainingConfig, train_parameters

GATES_FILE = "gates.safetensors"
GATES_CONFIG_FILE = "gates.json"
GATES_FORMAT = "lora-compose-bench/loraflow-gates/1"
CHECKPOINT_CHOICES = ("dev_loss", "dev_accuracy")


class GateFileError(ValueError):
    """Saved gates that cannot be loaded onto this cell, with the file and field at fault in the message."""


@dataclass
class LoraFlowTraining:
    """LoRA-Flow's training budget, shared by every method trained "the same way" (fusion, xlora).

    Defaults from the official code (thunlp/LoRAFlow scripts/train.sh, train/train.py) and its README (seed 000),
    the optimiser included: train.py builds `AdamOffloadOptimizer(eps=1e-5, betas=(0.9, 0.95))` and clips the
    gradient norm at `--clip_grad 1.0` before every step. The official run keeps the checkpoint that scores best on
    dev (`checkpoint_choice=dev_accuracy`, the paper suite's default); elsewhere the default is the lowest dev loss,
    which needs no generation.
    """

    learning_rate: float = 1e-3  # README table: 1e-3 for zh/ru math and zh/es code, 1e-4 for es math and ru code
    batch_size: int = 4  # README table: total batch 4 in four cells, 16 in es math and ru code
    epochs: float = 5.0  # scripts/train.sh: epoch=5
    warmup_ratio: float = 0.2  # train.py --warmup_ratio default
    schedule: str = "cosine"  # train.py --lr-decay-style default
    weight_decay: float = 0.1  # train.py --weight_decay default
    max_length: int = 1024  # train.py allows 4096; the few-shot examples are far shorter
    evaluations: int = 5  # the official run saves a gate per epoch and picks one on dev: one dev check per epoch
    adam_betas: tuple[float, float] = (0.9, 0.95)  # train/train.py: AdamOffloadOptimizer(betas=(0.9, 0.95))
    adam_epsilon: float = 1e-5  # train/train.py: AdamOffloadOptimizer(eps=1e-5)
    max_grad_norm: float = 1.0  # train/train.py: --clip_grad default 1.0, applied by optim_manager.clip_grad_norm
    # "dev_loss" | "dev_accuracy" | "": the suite's choice for the cell (`Cell.checkpoint_choice`), else dev_loss
    checkpoint_choice: str = ""

    def __post_init__(self):
        self.training()  # TrainingConfig refuses a budget that trains nothing (epochs 0, batch size 0, ...)
        if self.checkpoint_choice not in ("", *CHECKPOINT_CHOICES):
            raise ValueError(f"checkpoint_choice={self.checkpoint_choice!r}: valid: {', '.join(CHECKPOINT_CHOICES)} "
                             "or empty (the suite's choice)")  # fmt: skip

    def training(self) -> TrainingConfig:
        return TrainingConfig(
            learning_rate=self.learning_rate, batch_size=self.batch_size, epochs=self.epochs,
            warmup_ratio=self.warmup_ratio, schedule=self.schedule, weight_decay=self.weight_decay,
            max_length=self.max_length, evaluations=self.evaluations, adam_betas=tuple(self.adam_betas),
            adam_epsilon=self.adam_epsilon, max_grad_norm=self.max_grad_norm,
        )  # fmt: skip

    def dev_accuracy_for(self, cell: Cell) -> Callable[[torch.nn.Module], float] | None:
        """The cell's dev scorer when checkpoints are chosen by dev accuracy (this option, else the suite's choice for
        the cell, else dev loss); None when they are chosen by dev loss."""
        choice = self.checkpoint_choice or cell.checkpoint_choice or "dev_loss"
        if choice == "dev_loss":
            return None
        if cell.dev_accuracy is None or not cell.dev:
            raise ValueError(f"checkpoint_choice=dev_accuracy: cell {cell.task}/{cell.language} has no dev examples "
                             "or no dev scorer")  # fmt: skip
        return cell.dev_accuracy


@dataclass
class LoraFlowConfig(LoraFlowTraining):
    """The training budget plus the gate's own settings."""

    # The gates' softmax temperature, in training and generation alike. None, as the authors did it: training at T = 1
    # (train/ModelCenter blocks.py), generation at the suite's value for the cell (`Cell.gate_temperature`; the paper
    # suite: 1.1 for zh/ru math, UltraEval URLs/url.py), else 1.
    temperature: float | None = None
    # LoRA dropout on each adapter's input while the gates train, never in generation: LowRankLinear(lora_dropout=0.1)
    # on every projection in thunlp/LoRAFlow train/ModelCenter/model_center/layer/attention.py and feedforward.py.
    adapter_dropout: float = 0.1
    bias_init: tuple[float, ...] = ()  # empty: (-1/k, ..., -1/k, 1 - 1/k), the official (-0.5, +0.5) for k = 2
    weight_init_std: float = 0.0  # 0: W = 0 as official (ModelCenter Linear, cps=3 -> zeros_); > 0: N(0, std^2)
    # A file or the released `Gates/` folder (<language>_<task>.pt) of Bowen232/LoRA-Flow: fit() loads the authors'
    # trained gates instead of training (the paper suite's "released gates" row); empty: train as usual.
    gates_from: str = ""


def gate_temperatures(config: LoraFlowConfig, cell: Cell) -> tuple[float, float]:
    """(training, generation) softmax temperatures: an explicit option sets both; else 1 in training and the suite's
    value for the cell (or 1) in generation."""
    if config.temperature is not None:
        return config.temperature, config.temperature
    return 1.0, cell.gate_temperature if cell.gate_temperature is not None else 1.0


def token_texts(tokenizer, token_ids: list[int]) -> list[str]:
    """The text each token adds to the decoded string.

    A byte-level BPE may split one character (CJK, Cyrillic) over several tokens: the tokens before the last one get
    '' and the whole character goes to the token that completes it.
    """
    texts, start = [], 0
    for end in range(1, len(token_ids) + 1):
        text = tokenizer.decode(token_ids[start:end], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if text.endswith("\ufffd") and end < len(token_ids):
            texts.append("")
            continue
        texts.append(text)
        start = end
    return texts


def trace_file_tensors(traces: dict[int, ExampleTrace], adapter_names: list[str], tokenizer, example_ids: list[str]):
    """Recorded traces (by example index) as safetensors entries (methods/fusion_gate.py `trace_tensors`), plus the
    adapter names in weight order under `adapters.utf8` / `adapters.offsets`: what `bench.plots.fusion_weights` reads."""
    tensors = {f"adapters.{part}": tensor for part, tensor in pack_strings(adapter_names).items()}
    for index, trace in sorted(traces.items()):
        tensors.update(trace_tensors(example_ids[index], trace, token_texts(tokenizer, trace.token_ids.tolist())))
    return tensors


def stop_token_ids(tokenizer) -> set[int]:
    """The tokens after which a generated row is finished (its end-of-sequence and padding tokens)."""
    return {token for token in (tokenizer.eos_token_id, tokenizer.pad_token_id) if token is not None}


@register_method("loraflow")
class LoraFlow:
    learns = True
    Config = LoraFlowConfig

    def __init__(self, cell: Cell, config: LoraFlowConfig | None = None):
        self.config = config or LoraFlowConfig()
        self.cell = cell
        self.model = cell.model
        self.adapter_names = [adapter.name for adapter in cell.adapters]
        self.training_temperature, self.temperature = gate_temperatures(self.config, cell)
        if not 0.0 <= self.config.adapter_dropout < 1.0:
            raise ValueError(f"--set loraflow.adapter_dropout={self.config.adapter_dropout}: must be in [0, 1)")
        # Each data-parallel process masks its own slice of a batch: a stream of its own, the cell's seed on rank 0.
        dropout = AdapterInputDropout(self.config.adapter_dropout, cell.seed + 1_000_003 * cell.parallel.rank)
        slots = attach_adapters(cell.model, cell.adapters, dropout)
        self.gates = self._make_gates(len(find_decoder_layers(cell.model)), len(cell.adapters))
        self.recorder = FusionWeightRecorder(len(self.gates))
        install_gates(cell.model, slots, self.gates, self.recorder)
        self.traces: dict[int, ExampleTrace] = {}
        self.history: list[dict] = []

    def _make_gates(self, num_layers: int, num_adapters: int) -> list[FusionGate]:
        hidden_size = self.model.get_input_embeddings().embedding_dim
        bias = None
        if self.config.bias_init:
            if len(self.config.bias_init) != num_adapters:
                count = len(self.config.bias_init)
                raise ValueError(f"--set loraflow.bias_init: {count} values for {num_adapters} adapters")
            bias = torch.tensor(self.config.bias_init, dtype=torch.float32)
        gates = [FusionGate(hidden_size, num_adapters, self.temperature, bias) for _ in range(num_layers)]
        if self.config.weight_init_std > 0:
            generator = torch.Generator().manual_seed(self.cell.seed)
            for gate in gates:
                with torch.no_grad():
                    gate.weight.copy_(torch.randn(gate.weight.shape, generator=generator) * self.config.weight_init_std)
        device = next(self.model.parameters()).device
        return [gate.to(device) for gate in gates]

    def gate_parameters(self) -> list[torch.nn.Parameter]:
        return [parameter for gate in self.gates for parameter in (gate.weight, gate.bias)]

    @property
    def trainable_parameter_count(self) -> int:
        return sum(parameter.numel() for parameter in self.gate_parameters())

    def fit(self) -> None:
        """Train the gates only (AdamW, loss on the answer tokens); keep the best on dev (`checkpoint_choice`).
        With `gates_from`, load the authors' released gates for this cell instead."""
        cell = self.cell
        if self.config.gates_from:
            self._load_released_gates(released_gate_path(Path(self.config.gates_from), cell.task, cell.language))
            return
        self._set_temperature(self.training_temperature)
        try:
            self.history = train_parameters(
                self.model, cell.tokenizer, self.gate_parameters(), cell.train, cell.dev, self.config.training(),
                seed=cell.seed, description=f"loraflow {cell.task}-{cell.language}", parallel=cell.parallel,
                dev_accuracy=self._dev_accuracy if self.config.dev_accuracy_for(cell) else None,
            )  # fmt: skip
        finally:
            self._set_temperature(self.temperature)

    def _dev_accuracy(self, model: torch.nn.Module) -> float:
        """The cell's dev accuracy with the gates at the temperature they generate with (as the test is scored)."""
        self._set_temperature(self.temperature)
        try:
            return self.cell.dev_accuracy(model)
        finally:
            self._set_temperature(self.training_temperature)

    def _set_temperature(self, temperature: float) -> None:
        for gate in self.gates:
            gate.temperature = temperature

    def _load_released_gates(self, path: Path) -> None:
        hidden_size = self.gates[0].weight.shape[1]
        released = read_released_gates(path, len(self.gates), len(self.adapter_names), hidden_size)
        with torch.no_grad():
            for gate, (weight, bias) in zip(self.gates, released):
                gate.weight.copy_(weight)
                gate.bias.copy_(bias)
        self.history = [{"released_gates": str(path)}]

    def _gates_config(self) -> dict:
        return {
            "format": GATES_FORMAT,
            "base_model": self.cell.base_model_id,
            "adapters": self.adapter_names,
            "num_layers": len(self.gates),
            "hidden_size": self.gates[0].weight.shape[1],
            "temperature": self.temperature,
            "training_temperature": self.training_temperature,
            "history": self.history,
        }

    def save(self, directory: Path) -> None:
        """`gates.safetensors` (layers.<l>.weight, layers.<l>.bias) and `gates.json` naming adapters and base model."""
        directory = Path(directory)
        tensors = {}
        for index, gate in enumerate(self.gates):
            tensors[f"layers.{index}.weight"] = gate.weight.detach().float().cpu().contiguous()
            tensors[f"layers.{index}.bias"] = gate.bias.detach().float().cpu().contiguous()
        save_file(tensors, str(directory / GATES_FILE))
        (directory / GATES_CONFIG_FILE).write_text(json.dumps(self._gates_config(), indent=1), encoding="utf-8")

    def load(self, directory: Path) -> None:
        """Load saved gates; fails naming the field when they were trained on other adapters or another base."""
        directory = Path(directory)
        saved = _read_gates_config(directory / GATES_CONFIG_FILE)
        expected = self._gates_config()
        for field in ("format", "base_model", "adapters", "num_layers", "hidden_size"):
            if saved.get(field) != expected[field]:
                raise GateFileError(
                    f"{directory / GATES_CONFIG_FILE}: field '{field}' is {saved.get(field)!r} but this cell has "
                    f"{expected[field]!r}; these gates were trained for other adapters or another base model"
                )
        saved_temperatures = (saved.get("training_temperature", saved.get("temperature")), saved.get("temperature"))
        if saved_temperatures != (self.training_temperature, self.temperature):
            raise GateFileError(
                f"{directory / GATES_CONFIG_FILE}: gate temperatures (training, generation) are {saved_temperatures}, "
                f"this cell's are {(self.training_temperature, self.temperature)}; rerun with --force"
            )
        tensors = _read_gates_tensors(directory / GATES_FILE)
        for index, gate in enumerate(self.gates):
            for name, parameter in (("weight", gate.weight), ("bias", gate.bias)):
                _copy_checked(parameter, tensors, f"layers.{index}.{name}", directory / GATES_FILE)
        self.history = saved.get("history", [])

    @contextlib.contextmanager
    def record_weights(self, inputs: dict):
        """Wrap one generate() batch: keep each example's per-token, per-layer weights (runner hook)."""
        with self.recorder.recording():
            yield
        token_ids, weights = self.recorder.recorded()
        stop_ids = stop_token_ids(self.cell.tokenizer)
        prompt_mask = inputs["attention_mask"].cpu()
        for row, index in enumerate(inputs["indices"]):
            self.traces[index] = example_trace(token_ids, weights, prompt_mask, row, stop_ids)

    def recorded_weights(self, example_ids: list[str]) -> dict[str, torch.Tensor]:
        """Every recorded example's trace (runner hook; see `trace_file_tensors`)."""
        return trace_file_tensors(self.traces, self.adapter_names, self.cell.tokenizer, example_ids)


def _copy_checked(parameter: torch.nn.Parameter, tensors: dict[str, torch.Tensor], key: str, path: Path) -> None:
    if key not in tensors or tensors[key].shape != parameter.shape:
        found = tuple(tensors[key].shape) if key in tensors else "missing"
        raise GateFileError(f"{path}: '{key}' is {found}, need {tuple(parameter.shape)}")
    with torch.no_grad():
        parameter.copy_(tensors[key])


def _read_gates_config(path: Path) -> dict:
    if not path.is_file():
        raise GateFileError(f"{path}: not found (not a saved loraflow gate folder)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise GateFileError(f"{path}: not valid JSON ({error.msg})") from None


def _read_gates_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise GateFileError(f"{path}: not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise GateFileError(f"{path}: not a readable safetensors file ({error})") from None
