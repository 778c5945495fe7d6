"""Read a standard PEFT LoRA adapter directory into plain tensors, and check that it fits a base model.

A LoRA adapter adds `(alpha / r) * B A x` to a linear layer's output (loralib; A is r x d_in, B is d_out x r).
Here an adapter is just those tensors per module, so every method can combine them however its paper says.
"""

from __future__ import annotations

import math
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tasks.examples import read_json_file

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLE_WEIGHTS_FILE = "adapter_model.bin"
# peft 0.21's PeftModel.__init__ reads transformers 5's deprecated `is_gradient_checkpointing` on every wrap; the
# FutureWarning is for peft's maintainers, nothing a user of this harness can change (methods import this module).
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
# Published LoRAs scale by alpha / r of 0.5 to 4 (rsLoRA's alpha / sqrt(r) up to tens); far past that the update
# swamps the base layer's output and every completion comes out empty or degenerate.
MAX_SCALING = 1e4
KEY_PATTERN = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")


class AdapterError(ValueError):
    """An adapter directory that cannot be used, with the adapter and the part at fault in the message."""


@dataclass
class LoraModule:
    """One adapted linear layer: `delta_h = scaling * B (A x)`."""

    A: torch.Tensor  # r x d_in
    B: torch.Tensor  # d_out x r
    scaling: float

    @property
    def rank(self) -> int:
        return self.A.shape[0]


@dataclass
class LoraAdapter:
    """A LoRA adapter as plain tensors, keyed by the module path inside the base model."""

    name: str
    modules: dict[str, LoraModule]
    base_model: str = ""
    config: dict = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return sum(m.A.numel() + m.B.numel() for m in self.modules.values())


def _pattern_value(module_name: str, config: dict, pattern_field: str, field_name: str, default):
    """(value, the field it came from): the module's entry in PEFT's `rank_pattern`/`alpha_pattern`, whose keys match
    the end of a module path (peft.tuners.tuners_utils.get_pattern_key), else the config's `r`/`lora_alpha`."""
    for pattern, value in (config.get(pattern_field) or {}).items():
        if re.match(rf"(.*\.)?({pattern})$", module_name):
            return value, pattern_field
    return config.get(field_name, default), field_name


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_config_fields(config_path: Path, name: str, config: dict) -> None:
    """The fields the adapter's scaling and rank are read from: numbers, and patterns that are objects of numbers."""
    where = f"adapter '{name}': {config_path} field"
    if not _is_number(config.get("lora_alpha", 8)):
        raise AdapterError(f"{where} 'lora_alpha' must be a number, not {config['lora_alpha']!r}")
    rank = config.get("r")
    if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
        raise AdapterError(f"{where} 'r' must be a positive integer, not {rank!r}")
    for pattern_field in ("alpha_pattern", "rank_pattern"):
        patterns = config.get(pattern_field) or {}
        if not isinstance(patterns, dict) or not all(_is_number(value) for value in patterns.values()):
            raise AdapterError(f"{where} '{pattern_field}' must be an object {{module pattern: number}}, not {patterns!r}")
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise AdapterError(f"{where} '{pattern_field}': {pattern!r} is not a regular expression ({error})") from None


def _read_config(directory: Path, name: str) -> dict:
    config_path = directory / CONFIG_FILE
    if not config_path.is_file():
        raise AdapterError(f"adapter '{name}': {config_path} not found (not a PEFT adapter directory)")
    try:
        config = read_json_file(config_path)
    except ValueError as error:  # not UTF-8, not JSON or nested too deeply: the message names the file
        raise AdapterError(f"adapter '{name}': {error}") from None
    if not isinstance(config, dict):
        kind = type(config).__name__
        raise AdapterError(f"adapter '{name}': {config_path} must be a JSON object (a PEFT LoraConfig), not a {kind}")
    _check_config_fields(config_path, name, config)
    if config.get("peft_type", "LORA") != "LORA":
        raise AdapterError(f"adapter '{name}': {config_path} field 'peft_type' is {config['peft_type']!r}, need 'LORA'")
    for unsupported in ("use_dora", "fan_in_fan_out"):
        if config.get(unsupported):
            raise AdapterError(f"adapter '{name}': {config_path} sets '{unsupported}', which this harness does not support")
    return config


def weights_path(directory: Path) -> Path:
    """The adapter's weights file: safetensors, or a pickle `.bin` when that is all there is."""
    safetensors_path = directory / WEIGHTS_FILE
    pickle_path = directory / PICKLE_WEIGHTS_FILE
    return pickle_path if not safetensors_path.is_file() and pickle_path.is_file() else safetensors_path


def _read_weights(directory: Path, name: str, allow_pickle: bool) -> dict[str, torch.Tensor]:
    path = weights_path(directory)
    if not path.is_file():
        raise AdapterError(f"adapter '{name}': {path} not found")
    if path.name == PICKLE_WEIGHTS_FILE:
        if not allow_pickle:
            raise AdapterError(
                f"adapter '{name}': only {path} found; pickle files are refused, convert it to {WEIGHTS_FILE} "
                "(safetensors) or pass --allow-pickle to load it with torch.load(weights_only=True)"
            )
        try:
            return torch.load(path, map_location="cpu", weights_only=True)  # tensors only: no code runs
        except Exception as error:  # noqa: BLE001  (torch raises many types for unsafe or broken pickles)
            raise AdapterError(f"adapter '{name}': {path} is not a plain tensor file ({type(error).__name__})") from None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise AdapterError(f"adapter '{name}': {path} is not a readable safetensors file ({error})") from None


def load_lora_adapter(directory: str | Path, name: str | None = None, allow_pickle: bool = False) -> LoraAdapter:
    """Load a PEFT LoRA adapter directory (`adapter_config.json` + `adapter_model.safetensors`)."""
    directory = Path(directory)
    name = name or directory.name
    config = _read_config(directory, name)
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in _read_weights(directory, name, allow_pickle).items():
        match = KEY_PATTERN.match(key)
        if match is None:
            raise AdapterError(f"adapter '{name}': unexpected tensor '{key}' in {weights_path(directory)}")
        if not torch.isfinite(tensor).all():
            raise AdapterError(f"adapter '{name}': tensor '{key}' in {weights_path(directory)} holds NaN or Inf values")
        parts.setdefault(match["module"], {})[match["part"]] = tensor.float()
    if not parts:
        raise AdapterError(f"adapter '{name}': {weights_path(directory)} holds no LoRA tensors")
    modules = {
        module_name: _module_from_tensors(directory, name, module_name, pair, config)
        for module_name, pair in sorted(parts.items())
    }
    return LoraAdapter(name=name, modules=modules, base_model=config.get("base_model_name_or_path") or "", config=config)


def _module_from_tensors(directory: Path, name: str, module_name: str, pair: dict, config: dict) -> LoraModule:
    """One module's A and B with its scaling, checked against each other and against adapter_config.json."""
    if set(pair) != {"A", "B"}:
        raise AdapterError(f"adapter '{name}': module '{module_name}' lacks lora_{'A' if 'A' not in pair else 'B'}")
    A, B = pair["A"], pair["B"]
    if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[1]:
        raise AdapterError(
            f"adapter '{name}': module '{module_name}' has lora_A {tuple(A.shape)} and lora_B {tuple(B.shape)}, "
            "whose ranks do not match"
        )
    rank = A.shape[0]
    if rank == 0:
        raise AdapterError(f"adapter '{name}': module '{module_name}' has rank 0 (lora_A {tuple(A.shape)}), so no LoRA")
    config_path = directory / CONFIG_FILE
    config_rank, rank_field = _pattern_value(module_name, config, "rank_pattern", "r", None)
    if config_rank is not None and config_rank != rank:
        raise AdapterError(
            f"adapter '{name}': {config_path} field '{rank_field}' is {config_rank}, but module '{module_name}' has "
            f"rank {rank} (lora_A {tuple(A.shape)}); the config must give the rank of the tensors it comes with"
        )
    return LoraModule(A=A, B=B, scaling=_module_scaling(config_path, name, module_name, config, rank))


def _module_scaling(config_path: Path, name: str, module_name: str, config: dict, rank: int) -> float:
    """alpha / r (rsLoRA: alpha / sqrt(r)), refused when 0, not finite or beyond `MAX_SCALING`."""
    alpha, alpha_field = _pattern_value(module_name, config, "alpha_pattern", "lora_alpha", 8)
    if alpha == 0:
        raise AdapterError(
            f"adapter '{name}': {config_path} gives module '{module_name}' lora_alpha 0, "
            "so its scaling alpha / r is 0 and the adapter changes nothing"
        )
    rslora = bool(config.get("use_rslora"))
    scaling = alpha / math.sqrt(rank) if rslora else alpha / rank
    if not math.isfinite(scaling) or abs(scaling) > MAX_SCALING:
        formula = f"{alpha} / sqrt({rank})" if rslora else f"{alpha} / {rank}"
        raise AdapterError(
            f"adapter '{name}': {config_path} field '{alpha_field}' {alpha} gives module '{module_name}' the scaling "
            f"{formula} = {scaling:g}; a finite scaling of at most {MAX_SCALING:g} is expected"
        )
    return float(scaling)


def check_adapter_fits(adapter: LoraAdapter, model: torch.nn.Module, base_model_id: str | None = None) -> None:
    """Raise AdapterError naming the adapter and module when the adapter cannot be applied to `model`."""
    if base_model_id and adapter.base_model and adapter.base_model != base_model_id:
        raise AdapterError(
            f"adapter '{adapter.name}' was trained for base model '{adapter.base_model}', not '{base_model_id}'; "
            f"if they are the same model, set `base_model_id` in suite.json (and `base_model` in zoo.json) to "
            f"'{adapter.base_model}'"
        )
    named = dict(model.named_modules())
    for module_name, lora in adapter.modules.items():
        module = named.get(module_name)
        if module is None:
            raise AdapterError(f"adapter '{adapter.name}': module '{module_name}' does not exist in the base model")
        if not isinstance(module, torch.nn.Linear):
            raise AdapterError(
                f"adapter '{adapter.name}': module '{module_name}' is a {type(module).__name__}, not a Linear layer"
            )
        expected = (module.out_features, module.in_features)
        if (lora.B.shape[0], lora.A.shape[1]) != expected:
            raise AdapterError(
                f"adapter '{adapter.name}': module '{module_name}' maps {lora.A.shape[1]} -> {lora.B.shape[0]} "
                f"features but the base layer maps {expected[1]} -> {expected[0]}"
            )


def save_peft_adapter(peft_model, directory: str | Path) -> Path:
    """Save a peft `PeftModel`'s adapters as standard PEFT folders, without asking a hub about the base model.

    peft's default `save_embedding_layers="auto"` looks `base_model_name_or_path` up on the Hugging Face hub to guess
    whether the vocabulary was resized, a request (and a warning) for a made-up or local id; our LoRAs adapt Linear
    layers only (check_adapter_fits), never the embeddings, so there is nothing to guess.
    """
    peft_model.save_pretrained(str(directory), save_embedding_layers=False)
    return Path(directory)


def export_peft_adapter(adapter: LoraAdapter, directory: Path) -> Path:
    """Write `adapter` as a standard PEFT LoRA directory, each module's scaling folded into B (lora_alpha = r)."""
    ranks = {name: module.rank for name, module in adapter.modules.items()}
    rank = Counter(ranks.values()).most_common(1)[0][0]
    other_ranks = {name: module_rank for name, module_rank in ranks.items() if module_rank != rank}
    config = LoraConfig(
        r=rank, lora_alpha=rank, rank_pattern=other_ranks, alpha_pattern=other_ranks, lora_dropout=0.0, bias="none",
        target_modules=sorted(adapter.modules), task_type="CAUSAL_LM", base_model_name_or_path=adapter.base_model or None,
    )  # fmt: skip
    config.save_pretrained(str(directory))
    tensors = {}
    for name, module in adapter.modules.items():
        tensors[f"base_model.model.{name}.lora_A.weight"] = module.A.float().contiguous()
        tensors[f"base_model.model.{name}.lora_B.weight"] = (module.scaling * module.B.float()).contiguous()
    save_file(tensors, str(Path(directory) / WEIGHTS_FILE))
    return Path(directory)
