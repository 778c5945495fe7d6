"""The method registry and the small protocol every composition method implements.

One method is one file in `methods/` that decorates its class with `@register_method("name")`. A method object is
made for one cell (task x language x seed); the runner then calls `fit()` (or `load()` of a saved fit), generates with
`model`, and calls `save()` so a later run can skip the fit.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import pkgutil
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

import torch

from methods.data_parallel import SINGLE_PROCESS, DataParallel
from methods.lora_adapter import LoraAdapter
from tasks.examples import Example

log = logging.getLogger(__name__)


@dataclass
class Cell:
    """Everything a method may use for one (task, language, seed) cell of the grid."""

    model: torch.nn.Module  # a private copy of the base model: a method may change it in place
    tokenizer: Any
    adapters: list[LoraAdapter]  # the cell's candidates, in order: language adapter, then skill adapter
    train: list[Example]
    dev: list[Example]
    seed: int
    task: str = ""
    language: str = ""
    zoo: list[LoraAdapter] = field(default_factory=list)  # every adapter of the zoo (for methods that search it)
    composite_train: list[Example] = field(default_factory=list)  # plentiful composite data, where a suite has it
    zoo_training_data: list[Example] = field(default_factory=list)  # what the zoo's adapters were trained on, if known
    base_model_id: str = ""
    shared_directory: Path | None = None  # for what a method learns once and reuses in every cell (saved atomically)
    parallel: DataParallel = SINGLE_PROCESS  # this process's share of data-parallel training (pass to train_parameters)
    gate_temperature: float | None = None  # the suite's LoRA-Flow gate temperature here (None: the method default)
    checkpoint_choice: str | None = None  # the suite's checkpoint choice for trained rows here (None: the method's)
    # The cell's dev accuracy (%) of a model: greedy generations of the dev prompts under the test's settings, scored
    # by the task's scorer (set by the grid; None where no runner offers one).
    dev_accuracy: Callable[[torch.nn.Module], float] | None = None


def read_saved_record(path: Path, cell: Cell, what: str) -> dict:
    """The JSON record a method saved beside what it learned, checked to be for this cell's adapters and base model
    (it names them as `adapters` and `base_model`); a mismatch names the file and both sides."""
    record = json.loads(Path(path).read_text(encoding="utf-8"))
    names = [adapter.name for adapter in cell.adapters]
    if record.get("adapters") != names or record.get("base_model") != cell.base_model_id:
        raise ValueError(f"{path}: {what} for adapters {record.get('adapters')} on '{record.get('base_model')}', "
                         f"not {names} on '{cell.base_model_id}'")  # fmt: skip
    return record


class CompositionMethod(Protocol):
    """What the runner needs from a method.

    Optional, read when present: `trainable_parameter_count`, `history`, `record_weights(inputs)` /
    `recorded_weights(example_ids)`, `shares_state_with` (another method's name whose `cell.shared_directory`
    this method uses, so both reuse one once-learned state), and a classmethod `check_options(config, adapters)`
    that raises ValueError when the options cannot fit a cell's candidates (the grid calls it before any work).
    """

    name: ClassVar[str]
    learns: ClassVar[bool]  # False: nothing to fit, save or load
    model: torch.nn.Module  # the composed model, ready for `generate()`

    def __init__(self, cell: Cell, config: Any) -> None: ...

    def fit(self) -> None: ...

    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...


METHODS: dict[str, type] = {}
METHOD_GROUPS = {"lora": ("language_lora", "skill_lora")}


def register_method(name: str):
    """Class decorator: make a method available to the CLI and the contract tests under `name`."""

    def register(cls):
        if name in METHODS:
            raise ValueError(f"method '{name}' is registered twice ({METHODS[name].__module__}, {cls.__module__})")
        cls.name = name
        METHODS[name] = cls
        return cls

    return register


def load_all_methods() -> dict[str, type]:
    """Import every module in `methods/` so that their registrations run."""
    import methods

    for module in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"methods.{module.name}")
    return METHODS


def resolve_method_names(spec: str) -> list[str]:
    """Turn 'loraflow,lorahub', 'lora' (a group) or 'all' into registered names; unknown names fail at once."""
    available = load_all_methods()
    if spec.strip() == "all":
        return sorted(available)
    names: list[str] = []
    repeated: list[str] = []
    for name in (part.strip() for part in spec.split(",") if part.strip()):
        expanded = METHOD_GROUPS.get(name, (name,))
        for method_name in expanded:
            if method_name not in available:
                valid = ", ".join(sorted(available) + sorted(METHOD_GROUPS) + ["all"])
                raise ValueError(f"--methods: unknown method '{method_name}'; valid: {valid}")
            if method_name in names:
                repeated.append(method_name)
            else:
                names.append(method_name)
    if not names:
        raise ValueError("--methods: no method given")
    if repeated:
        log.warning("--methods: %s given more than once; each runs once", ", ".join(dict.fromkeys(repeated)))
    return names


def make_config(method: type, overrides: dict[str, str]) -> Any:
    """The method's config dataclass with `field=value` overrides (strings cast to the field's type)."""
    config_class = getattr(method, "Config", None)
    if config_class is None:
        if overrides:
            raise ValueError(f"--set: method '{method.name}' takes no options (got {sorted(overrides)})")
        return None
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    types = typing.get_type_hints(config_class)
    values = {}
    for key, text in overrides.items():
        if key not in fields:
            raise ValueError(f"--set {method.name}.{key}: unknown option; valid: {', '.join(sorted(fields))}")
        values[key] = _cast_option(f"{method.name}.{key}", text, types[key])
    try:
        return config_class(**values)
    except ValueError as error:
        given = " ".join(f"{method.name}.{key}={text}" for key, text in overrides.items()) or "(defaults)"
        raise ValueError(f"--set {given}: {method.name} refuses these options: {error}") from None


def _cast_option(option: str, text: str, kind: Any) -> Any:
    """`text` as a value of the field's type; NaN, infinity and an empty list are refused (no option means them:
    a list option left out keeps its default)."""
    try:
        value = _parse_option_text(text, kind)
    except ValueError:
        raise ValueError(f"--set {option}={text}: not a valid {getattr(kind, '__name__', kind)}") from None
    if isinstance(value, (tuple, list)) and not value:
        raise ValueError(f"--set {option}={text}: an empty list; give its values separated by ':' or leave it out")
    items = value if isinstance(value, (tuple, list)) else (value,)
    if any(isinstance(item, float) and not math.isfinite(item) for item in items):
        raise ValueError(f"--set {option}={text}: not a finite number (NaN and infinity are refused)")
    return value


def _parse_option_text(text: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(text)
        return text.lower() in ("true", "1", "yes")
    if origin in (tuple, list):
        (item_type, *_) = typing.get_args(kind) or (str,)
        items = [item_type(part) for part in text.split(":") if part]
        return tuple(items) if origin is tuple else items
    if kind in (int, float, str):
        return kind(text)
    if origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind):
        inner = next(arg for arg in typing.get_args(kind) if arg is not type(None))
        return None if text.lower() == "none" else _parse_option_text(text, inner)
    return text
