"""Suites: a base model, its adapter zoo and task data per (task, language) cell.

A suite is registered by name (`@register_suite("builtin")`) or given as a path to a `suite.json`:
    {"base_model": "<path or hub id>", "gguf_file": null, "base_model_id": "<id the zoo names; default base_model>",
     "zoo": "<zoo folder>", "max_new_tokens": {"math": 64},
     "tasks": {"math": {"zh": {"train": "math_zh_train.jsonl", "dev": "...", "test": "..."}}}}
Relative paths are taken from the folder of suite.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.models import load_model
from bench.zoo import Zoo, adapter_hashes, load_zoo_adapters, read_zoo
from methods.lora_adapter import LoraAdapter
from tasks.examples import Example, read_examples
from tasks.registry import TASKS


@dataclass
class CellData:
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    composite_train: list[Example] = field(default_factory=list)  # plentiful composite data (for the oracle)


@dataclass
class SuiteOptions:
    cache_dir: Path = Path(".cache/lora_compose_bench")
    device: str = "auto"
    dtype: str = "float32"
    allow_pickle: bool = False  # load pickle `.bin` adapters (tensors only, weights_only=True); refused otherwise
    data_dir: Path | None = None  # the public data sets (real and paper suites); None: $LORA_COMPOSE_BENCH_DATA
    checkpoints_dir: Path | None = None  # the released LoRA-Flow adapters and gates (paper suite)


@dataclass
class Suite:
    """A loaded suite: everything the grid needs, built or read once per run."""

    name: str
    base_model_id: str
    model: Any
    tokenizer: Any
    zoo: Zoo
    adapters: dict[str, LoraAdapter]
    cells: dict[tuple[str, str], CellData]
    max_new_tokens: dict[str, int] = field(default_factory=dict)  # per task, overriding the task's default
    stop: dict[str, tuple[str, ...]] = field(default_factory=dict)  # per task, overriding its stop strings (chat replies)
    generation_batch_size: int = 16
    zoo_training_data: list[Example] = field(default_factory=list)  # the union of the zoo adapters' training data
    adapter_sha256: dict[str, str] = field(default_factory=dict)  # filled from the zoo when the suite loads

    def __post_init__(self):
        self.adapter_sha256 = self.adapter_sha256 or adapter_hashes(self.zoo)

    def answer_limits(self, task: str) -> tuple[int, tuple[str, ...]]:
        """(max new tokens, stop strings) for the task's answers: the suite's overrides, else the task's defaults."""
        spec = TASKS[task]
        return self.max_new_tokens.get(task, spec.max_new_tokens), self.stop.get(task, spec.stop)

    def cell_adapters(self, task: str, language: str) -> list[LoraAdapter]:
        """The cell's candidates in LoRA-Flow's order: the language adapter, then the skill adapter."""
        return [
            self.adapters[self.zoo.find("language", language).name],
            self.adapters[self.zoo.find("skill", task).name],
        ]


SUITES: dict[str, Callable[[SuiteOptions], Suite]] = {}


def register_suite(name: str):
    """Decorator for a function `SuiteOptions -> Suite`."""

    def register(build):
        SUITES[name] = build
        return build

    return register


def load_suite(name_or_path: str, options: SuiteOptions) -> Suite:
    """A registered suite by name, or a local suite from a suite.json path (or a folder holding one)."""
    if name_or_path in SUITES:
        return SUITES[name_or_path](options)
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "suite.json"
    if path.is_file():
        return load_local_suite(path, options)
    raise ValueError(f"--suite: unknown suite '{name_or_path}'; valid: {', '.join(sorted(SUITES))} or a suite.json path")


def suite_display_name(name_or_path: str) -> str:
    """The name results are filed under: a registered suite's name, or the folder holding suite.json."""
    if name_or_path in SUITES:
        return name_or_path
    path = Path(name_or_path)
    return (path if path.is_dir() or not path.suffix else path.parent).resolve().name


def _read_suite_file(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg})") from None
    for required in ("base_model", "zoo", "tasks"):
        if required not in spec:
            raise ValueError(f"{path}: field '{required}' is missing")
    for task in spec["tasks"]:
        if task not in TASKS:
            raise ValueError(f"{path}: tasks.{task}: unknown task; valid: {', '.join(TASKS)}")
    return spec


def _read_cell(path: Path, task: str, language: str, files: dict) -> CellData:
    def split(name: str, required: bool = True) -> list[Example]:
        if name not in files:
            if required:
                raise ValueError(f"{path}: tasks.{task}.{language}: field '{name}' is missing")
            return []
        examples = read_examples(path.parent / files[name])
        if required and not examples:
            raise ValueError(f"{path.parent / files[name]}: no examples ({task}/{language} {name} split)")
        return examples

    return CellData(train=split("train"), dev=split("dev"), test=split("test"), composite_train=split("composite_train", False))


def load_local_suite(path: Path, options: SuiteOptions) -> Suite:
    """Load a suite described by a suite.json file."""
    spec = _read_suite_file(path)
    base_model = spec["base_model"]
    local_model = path.parent / base_model
    model_location = local_model if local_model.exists() else base_model
    model, tokenizer = load_model(model_location, spec.get("gguf_file"), options.device, options.dtype)
    base_model_id = spec.get("base_model_id", base_model)
    zoo = read_zoo(path.parent / spec["zoo"])
    cells = {
        (task, language): _read_cell(path, task, language, files)
        for task, by_language in spec["tasks"].items()
        for language, files in by_language.items()
    }
    return Suite(
        name=suite_display_name(str(path)),
        base_model_id=base_model_id,
        model=model,
        tokenizer=tokenizer,
        zoo=zoo,
        adapters=load_zoo_adapters(zoo, model, base_model_id, options.allow_pickle),
        cells=cells,
        max_new_tokens=spec.get("max_new_tokens", {}),
        generation_batch_size=_positive_int(path, spec, "generation_batch_size", 16),
    )


def _positive_int(path: Path, spec: dict, field_name: str, default: int) -> int:
    value = spec.get(field_name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{path}: field '{field_name}' must be a positive integer, not {value!r}")
    return value
