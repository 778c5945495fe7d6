"""Suites: a base model, its adapter zoo and task data per (task, language) cell.

A suite is registered by name (`@register_suite("builtin")`) or given as a path to a `suite.json`:
    {"base_model": "<path or hub id>", "gguf_file": null, "base_model_id": "<id the zoo names; default base_model>",
     "tokenizer": "<path or hub id; default: the base model's own>",
     "zoo": "<zoo folder>", "max_new_tokens": {"math": 64}, "generation_batch_size": 16,
     "tasks": {"math": {"zh": {"train": "math_zh_train.jsonl", "dev": "...", "test": "...", "composite_train": "..."}}}}
Relative paths are taken from the folder of suite.json. A test item whose id or prompt is also in the cell's train,
dev or composite_train split is refused (leakage), and so is one its task could only score 0 (`TEST_ITEM_CHECKS`).
A task's answer length (`max_new_tokens`, or the task's default) must leave room for a prompt in the model's context.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from bench.models import load_model
from bench.zoo import Zoo, adapter_hashes, load_zoo_adapters, read_zoo, zoo_training_data
from methods.lora_adapter import LoraAdapter
from tasks.examples import Example, leaked_ids, read_examples, read_json_file
from tasks.registry import TASKS
from tasks.scoring import code_item_problem, math_item_problem


@dataclass
class CellData:
    train: list[Example]
    dev: list[Example]
    test: list[Example]
    composite_train: list[Example] = field(default_factory=list)  # plentiful composite data (for the oracle)
    gate_temperature: float | None = None  # LoRA-Flow's gate temperature the authors used in this cell (paper suite)
    checkpoint_choice: str | None = None  # how trained rows pick their checkpoint here (None: each method's default)


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
    # Where the suite came from: a registered name with the key of its settings, or suite.json's resolved path.
    location: str = ""

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
        if not os.path.lexists(path):
            raise ValueError(f"--suite {name_or_path}: the folder holds no suite.json")
    if path.is_file():
        return load_local_suite(path, options)
    if os.path.lexists(path):  # there, but not a readable file: a symlink loop or to nothing, a folder named *.json
        raise ValueError(f"--suite: {path}: {_unreadable_reason(path)}")
    raise ValueError(f"--suite: unknown suite '{name_or_path}'; valid: {', '.join(sorted(SUITES))} or a suite.json path")


def _unreadable_reason(path: Path) -> str:
    try:
        path.stat()
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    return "is not a file"


def suite_display_name(name_or_path: str) -> str:
    """The name results are filed under: a registered suite's name, or the folder holding suite.json."""
    if name_or_path in SUITES:
        return name_or_path
    path = Path(name_or_path)
    return (path if path.is_dir() or not path.suffix else path.parent).resolve().name


SUITE_FIELDS = (
    "base_model", "gguf_file", "base_model_id", "tokenizer", "zoo", "max_new_tokens", "generation_batch_size", "tasks",
)  # fmt: skip
SPLITS = ("train", "dev", "test", "composite_train")
# Why a task's test item could only score 0 (or fail after generation), per task; None when it can be scored.
TEST_ITEM_CHECKS = {"math": math_item_problem, "code": code_item_problem}


def _read_suite_file(path: Path) -> dict:
    spec = read_json_file(path)
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: must be a JSON object with fields 'base_model', 'zoo' and 'tasks'")
    for required in ("base_model", "zoo", "tasks"):
        if required not in spec:
            raise ValueError(f"{path}: field '{required}' is missing")
    unknown = set(spec) - set(SUITE_FIELDS)
    if unknown:
        raise ValueError(f"{path}: unknown field(s) {sorted(unknown)}; valid: {', '.join(SUITE_FIELDS)}")
    for name in ("base_model", "zoo", "base_model_id", "tokenizer", "gguf_file"):
        if spec.get(name) is not None and not isinstance(spec[name], str):
            raise ValueError(f"{path}: field '{name}' must be a string, not {spec[name]!r}")
    _check_tasks_field(path, spec["tasks"])
    _check_max_new_tokens(path, spec.get("max_new_tokens", {}))
    return spec


def _check_tasks_field(path: Path, tasks: object) -> None:
    """tasks: {task: {language: {split: file}}}."""
    if not isinstance(tasks, dict):
        raise ValueError(f"{path}: field 'tasks' must be an object {{task: {{language: {{split: file}}}}}}")
    for task, by_language in tasks.items():
        if task not in TASKS:
            raise ValueError(f"{path}: tasks.{task}: unknown task; valid: {', '.join(TASKS)}")
        if not isinstance(by_language, dict):
            raise ValueError(f"{path}: tasks.{task} must be an object {{language: {{split: file}}}}, not {by_language!r}")
        for language, files in by_language.items():
            where = f"{path}: tasks.{task}.{language}"
            if not isinstance(files, dict):
                raise ValueError(f"{where} must be an object {{split: file}}, not {files!r}")
            unknown = set(files) - set(SPLITS)
            if unknown:
                raise ValueError(f"{where}: unknown split(s) {sorted(unknown)}; valid: {', '.join(SPLITS)}")
            for split, file in files.items():
                if not isinstance(file, str):
                    raise ValueError(f"{where}.{split} must be a file name, not {file!r}")


def _check_max_new_tokens(path: Path, limits: object) -> None:
    if not isinstance(limits, dict):
        raise ValueError(f"{path}: field 'max_new_tokens' must be an object {{task: tokens}}, not {limits!r}")
    for task, value in limits.items():
        if task not in TASKS:
            raise ValueError(f"{path}: max_new_tokens.{task}: unknown task; valid: {', '.join(TASKS)}")
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{path}: max_new_tokens.{task} must be a positive integer, not {value!r}")


def _read_cell(path: Path, task: str, language: str, files: dict) -> CellData:
    def split(name: str, required: bool = True) -> list[Example]:
        if name not in files:
            if required:
                raise ValueError(f"{path}: tasks.{task}.{language}: field '{name}' is missing")
            return []
        examples = read_examples(path.parent / files[name], TEST_ITEM_CHECKS.get(task) if name == "test" else None)
        if required and not examples:
            raise ValueError(f"{path.parent / files[name]}: no examples ({task}/{language} {name} split)")
        return examples

    cell = CellData(train=split("train"), dev=split("dev"), test=split("test"), composite_train=split("composite_train", False))
    for name in ("train", "dev", "composite_train"):
        leaked = leaked_ids(cell.test, getattr(cell, name))
        if leaked:
            raise ValueError(
                f"{path.parent / files['test']}: test item(s) {leaked[:5]} ({len(leaked)} in all) also appear in the "
                f"{name} split {path.parent / files[name]} (same id or prompt); a test item must be unseen"
            )
    return cell


def _load_base_model(path: Path, spec: dict, options: SuiteOptions):
    """(model, tokenizer): the base model and its own tokenizer, or the one suite.json's `tokenizer` names."""

    def local_or_hub(location: str) -> str | Path:
        local = path.parent / location
        return local if local.exists() else location

    tokenizer = local_or_hub(spec["tokenizer"]) if spec.get("tokenizer") else None
    hint = f"name one with the `tokenizer` field of {path}"
    model = local_or_hub(spec["base_model"])
    return load_model(model, spec.get("gguf_file"), options.device, options.dtype, tokenizer, hint)


def _check_answer_lengths(path: Path, spec: dict, tasks: list[str], model) -> None:
    """Refuse an answer length (suite.json's `max_new_tokens`, or the task's default) that leaves no room for a prompt
    in the model's context (`max_position_embeddings`, where the model's config gives it)."""
    context = getattr(model.config, "max_position_embeddings", None)
    if not isinstance(context, int):
        return
    limits = spec.get("max_new_tokens", {})
    for task in tasks:
        tokens = limits.get(task, TASKS[task].max_new_tokens)
        if tokens >= context:
            what = f"max_new_tokens.{task} is {tokens}" if task in limits else (
                f"tasks.{task}: the task's default answer length is {tokens} tokens (set max_new_tokens.{task})")
            raise ValueError(f"{path}: {what}, but the model's context holds {context} tokens "
                             f"(max_position_embeddings of {spec['base_model']}), the prompt included")  # fmt: skip


def load_local_suite(path: Path, options: SuiteOptions) -> Suite:
    """Load a suite described by a suite.json file."""
    spec = _read_suite_file(path)
    base_model = spec["base_model"]
    base_model_id = spec.get("base_model_id") or base_model
    zoo = read_zoo(path.parent / spec["zoo"])
    cells = {
        (task, language): _read_cell(path, task, language, files)
        for task, by_language in spec["tasks"].items()
        for language, files in by_language.items()
    }
    training_data = zoo_training_data(zoo)
    model, tokenizer = _load_base_model(path, spec, options)
    _check_answer_lengths(path, spec, list(spec["tasks"]), model)
    return Suite(
        name=suite_display_name(str(path)),
        location=str(path.resolve()),
        base_model_id=base_model_id,
        model=model,
        tokenizer=tokenizer,
        zoo=zoo,
        adapters=load_zoo_adapters(zoo, model, base_model_id, options.allow_pickle),
        cells=cells,
        max_new_tokens=spec.get("max_new_tokens", {}),
        generation_batch_size=_positive_int(path, spec, "generation_batch_size", 16),
        zoo_training_data=training_data,
    )


def _positive_int(path: Path, spec: dict, field_name: str, default: int) -> int:
    value = spec.get(field_name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{path}: field '{field_name}' must be a positive integer, not {value!r}")
    return value
