"""Read the fusion gates the LoRA-Flow authors released (Hugging Face `Bowen232/LoRA-Flow`, folder `Gates/`).

Each cell's gates are one PyTorch file, `<language>_<task>.pt` (e.g. `zh_math.pt`), holding a dict of tensors saved by
their BMTrain/ModelCenter training (thunlp/LoRAFlow `train/train.py`): per decoder layer `i`,
`encoder.layers.<i>.lora_fusion_gate.weight` (k x d, the gate's W) and `encoder.layers.<i>.weight_bias` (k values,
the gate's b), with adapters in the order language, task, as their evaluation loads them (`UltraEval`'s
`load_fusion_gate`). The file is read with `weights_only=True`: tensors only, no code.

The repository's example gate (`UltraEval/lora-fusion/peft-group_lora/saved_model/gate.pt`) holds the weights alone,
from a gate without a bias: such a file loads with b = 0 (`softmax(W x)`), and a warning names it. The layer prefix
may also be Hugging Face's `model.layers.<i>.` (their `lora-fusion` Llama names the gate so).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch

log = logging.getLogger(__name__)
WEIGHT_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.lora_fusion_gate\.weight$")
BIAS_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.weight_bias$")


class ReleasedGateError(ValueError):
    """A released gate file that does not fit this cell, naming the file and the key at fault."""


def released_gate_path(location: Path, task: str, language: str) -> Path:
    """`location` itself when it is a file, else `<location>/<language>_<task>.pt` (the released `Gates/` layout)."""
    location = Path(location)
    path = location if location.is_file() else location / f"{language}_{task}.pt"
    if not path.is_file():
        raise ReleasedGateError(f"{path}: no released gate file (from Bowen232/LoRA-Flow, folder Gates/)")
    return path


def _tensors_by_layer(path: Path, tensors: dict, pattern: re.Pattern) -> dict[int, torch.Tensor]:
    """The file's tensors whose key matches `pattern`, by layer number; a layer named twice is an error."""
    by_layer: dict[int, tuple[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        match = pattern.search(key)
        if match is None:
            continue
        layer = int(match.group(1))
        if layer in by_layer:
            raise ReleasedGateError(f"{path}: layer {layer} appears twice ('{by_layer[layer][0]}' and '{key}')")
        by_layer[layer] = (key, tensor)
    return {layer: tensor for layer, (_, tensor) in by_layer.items()}


def _read_tensor_dict(path: Path) -> dict:
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a tensor dict
        raise ReleasedGateError(f"{path}: not a readable PyTorch tensor file ({error})") from None
    if not isinstance(tensors, dict):
        raise ReleasedGateError(f"{path}: holds a {type(tensors).__name__}, not a dict of tensors")
    return tensors


def read_released_gates(path: Path, num_layers: int, num_adapters: int, hidden_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(W, b) per decoder layer, checked against the model's layer count, hidden size and adapter count; a file
    without any bias gives b = 0 (logged), one with biases for only some layers is refused."""
    tensors = _read_tensor_dict(path)
    weights = _tensors_by_layer(path, tensors, WEIGHT_KEY)
    biases = _tensors_by_layer(path, tensors, BIAS_KEY)
    if len(weights) != num_layers:
        raise ReleasedGateError(f"{path}: gates for {len(weights)} layers, the model has {num_layers}")
    if sorted(weights) != list(range(num_layers)):
        raise ReleasedGateError(f"{path}: gates for layers {sorted(weights)}, the model's are 0-{num_layers - 1}")
    if not biases:
        log.warning("%s: no 'weight_bias' tensors (a gate without bias, like the thunlp/LoRAFlow example gate.pt); "
                    "using b = 0", path)  # fmt: skip
        biases = {layer: torch.zeros(num_adapters) for layer in range(num_layers)}
    missing = [layer for layer in range(num_layers) if layer not in biases]
    if missing:
        raise ReleasedGateError(f"{path}: key 'encoder.layers.{missing[0]}.weight_bias' is missing "
                                f"({len(missing)} of {num_layers} layers have no bias)")  # fmt: skip
    gates = []
    for layer in range(num_layers):
        weight, bias = weights[layer].float(), biases[layer].float().reshape(-1)
        if tuple(weight.shape) != (num_adapters, hidden_size) or bias.numel() != num_adapters:
            raise ReleasedGateError(
                f"{path}: layer {layer} has W {tuple(weight.shape)} and b of {bias.numel()} values; this cell needs "
                f"W ({num_adapters}, {hidden_size}) and {num_adapters} values (adapters: language, task)"
            )
        gates.append((weight, bias))
    return gates
