"""The adapter zoo: a folder of PEFT LoRA adapters plus `zoo.json` saying what each one is for.

zoo.json:
    {"base_model": "<id the adapters were trained on>",
     "adapters": [{"name": "zh", "path": "language_zh", "role": "language", "language": "zh"},
                  {"name": "math", "path": "skill_math", "role": "skill", "skill": "math"}]}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from bench.storage import file_sha256
from methods.lora_adapter import AdapterError, LoraAdapter, check_adapter_fits, load_lora_adapter, weights_path

MANIFEST_FILE = "zoo.json"
ROLES = {"language": "language", "skill": "skill"}  # role -> the field that says which one


@dataclass(frozen=True)
class ZooEntry:
    name: str
    path: str  # relative to the zoo folder, or absolute
    role: str  # "language" | "skill"
    language: str = ""
    skill: str = ""


@dataclass
class Zoo:
    directory: Path
    base_model: str
    entries: list[ZooEntry]

    def adapter_directory(self, entry: ZooEntry) -> Path:
        return (self.directory / entry.path).resolve()

    def find(self, role: str, which: str) -> ZooEntry:
        """The adapter for a language (role 'language') or a skill (role 'skill')."""
        for entry in self.entries:
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
    if not record.get(ROLES[role]):
        raise AdapterError(f"{where}: a {role} adapter needs the field '{ROLES[role]}'")
    unknown = set(record) - {"name", "path", "role", "language", "skill"}
    if unknown:
        raise AdapterError(f"{where}: unknown field(s) {sorted(unknown)}")
    return ZooEntry(**record)


def read_zoo(directory: str | Path) -> Zoo:
    """Read and check a zoo folder's manifest (not the adapters themselves)."""
    directory = Path(directory)
    manifest = directory / MANIFEST_FILE
    if not manifest.is_file():
        raise AdapterError(f"{manifest}: zoo manifest not found")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise AdapterError(f"{manifest}: not valid JSON ({error.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("base_model"), str):
        raise AdapterError(f"{manifest}: field 'base_model' is missing")
    if not isinstance(data.get("adapters"), list) or not data["adapters"]:
        raise AdapterError(f"{manifest}: field 'adapters' must be a non-empty list")
    entries = [_parse_entry(manifest, index, record) for index, record in enumerate(data["adapters"])]
    names = [entry.name for entry in entries]
    duplicate = sorted({name for name in names if names.count(name) > 1})
    if duplicate:
        raise AdapterError(f"{manifest}: duplicate adapter name(s) {duplicate}")
    return Zoo(directory=directory, base_model=data["base_model"], entries=entries)


def write_zoo(directory: Path, base_model: str, entries: list[ZooEntry]) -> Path:
    """Write `zoo.json` for adapters already saved under `directory`."""
    manifest = Path(directory) / MANIFEST_FILE
    payload = {"base_model": base_model, "adapters": [asdict(entry) for entry in entries]}
    manifest.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def load_zoo_adapters(
    zoo: Zoo, model: torch.nn.Module, base_model_id: str, allow_pickle: bool = False
) -> dict[str, LoraAdapter]:
    """Load every adapter of the zoo and check that it fits `model`; fail naming the adapter and module."""
    if zoo.base_model != base_model_id:
        raise AdapterError(
            f"{zoo.directory / MANIFEST_FILE}: zoo is for base model '{zoo.base_model}', not '{base_model_id}'"
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
