"""The built-in suite's cache: a tiny build is byte-identical for the same settings, reused, and rebuilt on a change."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.builtin_suite import BuiltinSettings, ensure_cache_entry, load_builtin_suite, pretraining_texts
from bench.suites import SuiteOptions
from bench.zoo import read_zoo
from methods.training import TrainingConfig

ROOT = Path(__file__).resolve().parents[1]


def tiny_settings(**changes) -> BuiltinSettings:
    """The real build pipeline at toy sizes (seconds on CPU)."""
    training = TrainingConfig(learning_rate=3e-3, batch_size=8, epochs=1, evaluations=0, max_length=96)
    settings = BuiltinSettings(
        vocab_size=300, number_tokens=40, hidden_size=32, layers=1, heads=2, intermediate_size=64, english_texts=30,
        other_language_texts=6, parallel_pairs=6, reverse_pairs=4, statement_pairs=4, behaviour_lines=4,
        copy_lines=4, arithmetic_lines=4, skill_texts={"math": 4, "code": 4}, pretraining=training, language_texts=8,
        skill_examples=8, adapter_training=training, skill_training=training,
    )  # fmt: skip
    return dataclasses.replace(settings, **changes)


def file_digests(directory: Path) -> dict[str, str]:
    """sha256 of every file but build.json (which records wall times)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != "build.json"
    }


def test_same_settings_same_bytes_reused_and_a_change_rebuilds(tmp_path):
    settings = tiny_settings()
    first = ensure_cache_entry(settings, tmp_path / "a")
    # an independent build of the same settings in another process, with other string hashing (set order)
    script = "from tests.test_builtin_suite import *; ensure_cache_entry(tiny_settings(), Path(sys.argv[1]))"
    environment = {**os.environ, "PYTHONHASHSEED": "7", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "b")], check=True, cwd=ROOT, env=environment)
    again = tmp_path / "b" / first.name
    assert first.name == f"builtin-{settings.key()}" and (again / "build.json").is_file()
    digests = file_digests(first)
    assert any(name.startswith("zoo/skill_math/") for name in digests) and "base/model.safetensors" in digests
    assert digests == file_digests(again)  # an independent build of the same settings: the same bytes

    stamp = (first / "build.json").stat().st_mtime_ns
    assert ensure_cache_entry(settings, tmp_path / "a") == first and (first / "build.json").stat().st_mtime_ns == stamp
    changed = ensure_cache_entry(tiny_settings(statement_pairs=6), tmp_path / "a")
    entries = sorted(p.name for p in (tmp_path / "a").iterdir() if not p.name.startswith("."))  # not the build locks
    assert changed != first and entries == sorted([first.name, changed.name])
    assert file_digests(changed)["base/model.safetensors"] != digests["base/model.safetensors"]

    suite = load_builtin_suite(SuiteOptions(cache_dir=tmp_path / "a", device="cpu"), settings)
    assert [entry.name for entry in read_zoo(first / "zoo").entries] == [
        "language_zh", "language_ru", "language_es", "skill_math", "skill_code"
    ]  # fmt: skip
    assert json.loads((first / "build.json").read_text())["base_model_id"] == suite.base_model_id


def test_pretraining_text_holds_no_answer_and_no_code():
    texts = pretraining_texts(tiny_settings(skill_texts={"math": 0, "code": 0}, statement_pairs=40))
    assert not any("####" in text or "return " in text or "def " in text for text in texts)
    assert any("\n" in text and "xs" in text for text in texts)  # a docstring sentence and its translation


def test_a_pretrained_base_skips_pretraining_and_its_zoo_names_it(tmp_path):
    scratch = ensure_cache_entry(tiny_settings(), tmp_path)
    settings = tiny_settings(base_model=str(scratch / "base"))
    entry = ensure_cache_entry(settings, tmp_path)
    assert not (entry / "base").exists() and (entry / "zoo" / "skill_code" / "adapter_config.json").is_file()
    suite = load_builtin_suite(SuiteOptions(cache_dir=tmp_path, device="cpu"), settings, name="mine")
    assert suite.name == "mine" and suite.base_model_id == str(scratch / "base") == read_zoo(entry / "zoo").base_model
    assert set(suite.adapters) == {"language_zh", "language_ru", "language_es", "skill_math", "skill_code"}


def test_the_smollm2_tier_is_registered_with_its_own_settings():
    from bench.builtin_suite import SMOLLM2, SMOLLM2_SETTINGS
    from bench.suites import SUITES

    assert "builtin-smollm2" in SUITES and SMOLLM2_SETTINGS.base_model == SMOLLM2
    assert SMOLLM2_SETTINGS.alignment_in == "language_adapters" and SMOLLM2_SETTINGS.key() != BuiltinSettings().key()
