"""What a finished cell was computed from, so that a rerun reuses it only when every input is the same.

A cell's identity covers the suite (where it came from, the content of the cell's data), the base model's weights
and tokenizer, every zoo adapter's bytes, the generation settings, the scorer's version, the method's options and
`--limit`. The grid compares a finished cell's recorded identity with the current one and recomputes it (saying
which inputs changed) when they differ; the report refuses to put cells of different inputs in one table.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import torch

from bench.suites import Suite
from methods.training import key_record
from tasks.registry import TASKS

# Fields of a cell's identity whose change refits what the method learned (the rest only regenerate or rescore).
FIT_FIELDS = ("method", "options", "seed", "suite", "base_model", "tokenizer", "adapters", "zoo_training_data", "data")


def text_digest(value) -> str:
    """sha256 of a JSON-serialisable value (keys sorted), as hex."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def model_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer of `model`, by name, dtype and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()


def tokenizer_digest(tokenizer) -> str:
    """sha256 of the tokenizer's vocabulary, special tokens and chat template."""
    return text_digest({"vocabulary": tokenizer.get_vocab(), "special": tokenizer.special_tokens_map,
                        "chat_template": getattr(tokenizer, "chat_template", None)})  # fmt: skip


def examples_digest(examples) -> str:
    return text_digest([dataclasses.asdict(example) for example in examples])


def suite_inputs(suite: Suite) -> dict:
    """The inputs every cell of `suite` shares: location, base model, tokenizer, zoo (computed once per run)."""
    return {
        "suite": suite.location or suite.name,
        "base_model": {"id": suite.base_model_id, "sha256": model_digest(suite.model)},
        "tokenizer": tokenizer_digest(suite.tokenizer),
        "adapters": dict(sorted(suite.adapter_sha256.items())),
        "zoo_training_data": examples_digest(suite.zoo_training_data),
    }


def cell_inputs(suite: Suite, shared: dict, task: str, language: str) -> dict:
    """`shared` (from `suite_inputs`) plus what is the cell's own: its data, generation settings and scorer."""
    data = suite.cells[(task, language)]
    max_new_tokens, stop = suite.answer_limits(task)
    return shared | {
        "data": {split: examples_digest(getattr(data, split)) for split in ("train", "dev", "test", "composite_train")}
        | {"gate_temperature": data.gate_temperature}
        | ({"checkpoint_choice": data.checkpoint_choice} if data.checkpoint_choice else {}),  # recorded where set
        "generation": {"max_new_tokens": max_new_tokens, "stop": list(stop)},
        "scorer": TASKS[task].scorer_version,
    }


# Method options added after cells were committed, left out of an identity at these values (their default), so
# cells computed before an option existed, by what its default still computes, keep their identity.
OPTION_NEUTRAL_DEFAULTS = {"checkpoint_choice": ""}


def cell_identity(method: str, options: dict, limit: int | None, seed: int, inputs: dict) -> dict:
    options = key_record(options, OPTION_NEUTRAL_DEFAULTS)
    return {"method": method, "options": options, "limit": limit, "seed": seed} | inputs


def identity_key(identity: dict, fields: tuple[str, ...] | None = None) -> str:
    """A short hash of the identity (or of its `fields` only)."""
    chosen = identity if fields is None else {name: identity.get(name) for name in fields}
    return text_digest(chosen)[:16]


def changed_inputs(old: dict | None, new: dict) -> list[str]:
    """The names of the identity fields that differ (all of them for a cell recorded without an identity)."""
    if not isinstance(old, dict):
        return ["(no identity recorded)"]
    return [name for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]
