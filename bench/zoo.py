"""The adapter zoo: a folder of PEFT LoRA adapters plus `zoo.json` saying what each one is for.

zoo.json:
    {"base_model": "<id the adapters were trained on>",
     "adapters": [{"name": "zh", "path": "language_zh", "role": "language", "language": "zh"},
                  {"name": "math", "path": "skill_math", "role": "skill", "skill": "math", "data": "math_train.jsonl"}]}
`data` (optional) is the JSONL the adapter was trained on (`Example` lines or `{"text": ...}` lines), relative to the
zoo folder; methods that train on the zoo's own data (HydraLoRA) read it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.storage import file_sha256
from methods.lora_adapter import AdapterError, LoraAdapter, check_adapter_fits, load_lora_adapter, weights_path
from tasks.examples import Example, read_json_file, read_training_examples

log = logging.getLogger(__name__)
MANIFEST_FILE = "zoo.json"
ROLES = {"language": "language", "skill": "skill"}  # role -> the field that says which one


@dataclass(frozen=True)
class ZooEntry:
    name: str
    path: str  # relative to the zoo folder, or absolute
    role: str  # "language" | "skill"
    language: str = ""
    skill: str = ""
    data: str = ""  # the JSONL the adapter was trained on, relative to the zoo folder; "" when not supplied


OPTIONAL_FIELDS = ("language", "skill", "data")


@dataclass
class Zoo:
    directory: Path
    base_model: str
    entries: list[ZooEntry]

    def adapter_directory(self, entry: ZooEntry) -> Path:
        return (self.directory / entry.path).resolve()

    def find(self, role: str, which: str) -> ZooEntry:
        """The adapter for a language (role 'language') or a skill (role 'skill')."""
        for entry in self.entries:  # the first listed; read_zoo warns when there are more
            if entry.role == role and getattr(entry, ROLES[role]) == which:
                return entry
        raise AdapterError(f"{self.directory / MANIFEST_FILE}: no {role} adapter for '{which}'")


def _parse_entry(manifest: Path, index: int, record: object) -> ZooEntry:
    where = f"{manifest}: adapters[{index}]"
    if not isinstance(record, dict):
        raise AdapterError(f"{where} is not an object")
    for required in ("name", "path", "role"):
        if not isinstance(record.get(required), str) or not record[required]:
            raise AdapterError(f"{where}: field '{required}' is missing or empty")
    role = record["role"]
    if role not in ROLES:
        raise AdapterError(f"{where}: field 'role' is '{role}'; valid: {', '.join(ROLES)}")
    unknown = set(record) - {"name", "path", "role", *OPTIONAL_FIELDS}
    if unknown:
        raise AdapterError(f"{where}: unknown field(s) {sorted(unknown)}")
    for optional in OPTIONAL_FIELDS:
        if not isinstance(record.get(optional, ""), str):
            raise AdapterError(f"{where}: field '{optional}' must be a string, not {record[optional]!r}")
    if not record.get(ROLES[role]):
        raise AdapterError(f"{where}: a {role} adapter needs the field '{ROLES[role]}'")
    return ZooEntry(**record)


def _warn_about_duplicate_roles(manifest: Path, entries: list[ZooEntry]) -> None:
    """Two adapters for one language (or skill): cells use the first listed (Zoo.find); say so, naming both."""
    first: dict[tuple[str, str], ZooEntry] = {}
    for entry in entries:
        key = (entry.role, getattr(entry, ROLES[entry.role]))
        if key in first:
            log.warning(
                "%s: adapters '%s' and '%s' are both %s adapters for '%s'; cells use '%s' (the first listed)",
                manifest, first[key].name, entry.name, entry.role, key[1], first[key].name,
            )  # fmt: skip
        else:
            first[key] = entry


def read_zoo(directory: str | Path) -> Zoo:
    """Read and check a zoo folder's manifest (not the adapters themselves)."""
    directory = Path(directory)
    manifest = directory / MANIFEST_FILE
    if not manifest.is_file():
        raise AdapterError(f"{manifest}: zoo manifest not found")
    try:
        data = read_json_file(manifest)
    except ValueError as error:  # not UTF-8, not JSON or nested too deeply: the message names the file
        raise AdapterError(str(error)) from None
    if not isinstance(data, dict):
        raise AdapterError(f"{manifest}: must be a JSON object with fields 'base_model' and 'adapters'")
    if not isinstance(data.get("base_model"), str):
        raise AdapterError(f"{manifest}: field 'base_model' is missing")
    if not isinstance(data.get("adapters"), list) or not data["adapters"]:
        raise AdapterError(f"{manifest}: field 'adapters' must be a non-empty list")
    entries = [_parse_entry(manifest, index, record) for index, record in enumerate(data["adapters"])]
    names = [entry.name for entry in entries]
    duplicate = sorted({name for name in names if names.count(name) > 1})
    if duplicate:
        raise AdapterError(f"{manifest}: duplicate adapter name(s) {duplicate}")
    _warn_about_duplicate_roles(manifest, entries)
    return Zoo(directory=directory, base_model=data["base_model"], entries=entries)


def write_zoo(directory: Path, base_model: str, entries: list[ZooEntry]) -> Path:
    """Write `zoo.json` for adapters already saved under `directory`."""
    manifest = Path(directory) / MANIFEST_FILE
    # `data` is written only when set, so zoos without it keep the bytes they had before the field existed
    records = [{key: value for key, value in asdict(entry).items() if key != "data" or value} for entry in entries]
    payload = {"base_model": base_model, "adapters": records}
    manifest.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def load_zoo_adapters(
    zoo: Zoo, model: torch.nn.Module, base_model_id: str, allow_pickle: bool = False
) -> dict[str, LoraAdapter]:
    """Load every adapter of the zoo and check that it fits `model`; fail naming the adapter and module."""
    if zoo.base_model != base_model_id:
        raise AdapterError(
            f"{zoo.directory / MANIFEST_FILE}: zoo is for base model '{zoo.base_model}', not '{base_model_id}'; "
            f"if they are the same model, set `base_model_id` in suite.json to '{zoo.base_model}'"
        )
    adapters = {}
    for entry in zoo.entries:
        adapter = load_lora_adapter(zoo.adapter_directory(entry), name=entry.name, allow_pickle=allow_pickle)
        check_adapter_fits(adapter, model, base_model_id)
        adapters[entry.name] = adapter
    return adapters


def adapter_hashes(zoo: Zoo) -> dict[str, str]:
    """sha256 of each adapter's weights file, recorded in every result so numbers can be traced to adapters."""
    return {entry.name: file_sha256(weights_path(zoo.adapter_directory(entry))) for entry in zoo.entries}


def zoo_training_data(zoo: Zoo) -> list[Example]:
    """The union of the data the zoo's adapters were trained on, where zoo.json names it (`data`); logs the rest."""
    examples, missing = [], []
    for entry in zoo.entries:
        if entry.data:
            examples += read_training_examples(zoo.directory / entry.data, prefix=entry.name)
        else:
            missing.append(entry.name)
    if examples and missing:  # a partial union would train HydraLoRA on some adapters' data only: say so
        log.warning("%s: adapter(s) %s have no `data` field; the zoo's training data holds the others' only",
                    zoo.directory / MANIFEST_FILE, missing)  # fmt: skip
    return examples
