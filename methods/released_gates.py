"""Read the fusion gates the LoRA-Flow authors released (Hugging Face `Bowen232/LoRA-Flow`, folder `Gates/`).

Each cell's gates are one PyTorch file, `<language>_<task>.pt` (e.g. `zh_math.pt`), holding a dict of tensors saved by
their BMTrain/ModelCenter training (thunlp/LoRAFlow `train/train.py`): per decoder layer `i`,
`encoder.layers.<i>.lora_fusion_gate.weight` (k x d, the gate's W) and `encoder.layers.<i>.weight_bias` (k values,
the gate's b), with adapters in the order language, task, as their evaluation loads them (`UltraEval`'s
`load_fusion_gate`). The file is read with `weights_only=True`: tensors only, no code.
"""

from __future__ import annotations

from pathlib import Path

import torch

WEIGHT_KEY = "encoder.layers.{layer}.lora_fusion_gate.weight"
BIAS_KEY = "encoder.layers.{layer}.weight_bias"


class ReleasedGateError(ValueError):
    """A released gate file that does not fit this cell, naming the file and the key at fault."""


def released_gate_path(location: Path, task: str, language: str) -> Path:
    """`location` itself when it is a file, else `<location>/<language>_<task>.pt` (the released `Gates/` layout)."""
    location = Path(location)
    path = location if location.is_file() else location / f"{language}_{task}.pt"
    if not path.is_file():
        raise ReleasedGateError(f"{path}: no released gate file (from Bowen232/LoRA-Flow, folder Gates/)")
    return path


def read_released_gates(path: Path, num_layers: int, num_adapters: int, hidden_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(W, b) per decoder layer, checked against the model's layer count, hidden size and adapter count."""
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a tensor dict
        raise ReleasedGateError(f"{path}: not a readable PyTorch tensor file ({error})") from None
    if not isinstance(tensors, dict):
        raise ReleasedGateError(f"{path}: holds a {type(tensors).__name__}, not a dict of tensors")
    layers_in_file = sum(1 for key in tensors if key.endswith(".lora_fusion_gate.weight"))
    if layers_in_file != num_layers:
        raise ReleasedGateError(f"{path}: gates for {layers_in_file} layers, the model has {num_layers}")
    gates = []
    for layer in range(num_layers):
        weight_key, bias_key = WEIGHT_KEY.format(layer=layer), BIAS_KEY.format(layer=layer)
        for key in (weight_key, bias_key):
            if key not in tensors:
                raise ReleasedGateError(f"{path}: key '{key}' is missing")
        weight, bias = tensors[weight_key].float(), tensors[bias_key].float().reshape(-1)
        if tuple(weight.shape) != (num_adapters, hidden_size) or bias.numel() != num_adapters:
            raise ReleasedGateError(
                f"{path}: layer {layer} has W {tuple(weight.shape)} and b of {bias.numel()} values; this cell needs "
                f"W ({num_adapters}, {hidden_size}) and {num_adapters} values (adapters: language, task)"
            )
        gates.append((weight, bias))
    return gates
