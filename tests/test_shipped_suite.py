"""The default built-in suite ships built (bench/shipped_suite.py): pinned bytes, loaded without building."""

from __future__ import annotations

import shutil

import pytest

import bench.builtin_suite as builtin_suite
import bench.shipped_suite as shipped_suite
from bench.builtin_suite import BuiltinSettings, load_builtin_suite
from bench.shipped_suite import SHIPPED_KEY, SHIPPED_ROOT, SHIPPED_SHA256, entry_hashes, rebuild, shipped_directory
from bench.suites import SuiteOptions


def test_the_shipped_entry_is_the_default_settings_and_every_file_is_pinned():
    assert SHIPPED_KEY == BuiltinSettings().key()
    assert entry_hashes(SHIPPED_ROOT / f"builtin-{SHIPPED_KEY}") == SHIPPED_SHA256
    assert {"base/model.safetensors", "zoo/zoo.json"} <= set(SHIPPED_SHA256)


def test_the_default_suite_loads_without_building(tmp_path, monkeypatch):
    def no_build(*arguments, **options):
        raise AssertionError("the shipped suite was built again")

    monkeypatch.setattr(builtin_suite, "build_entry", no_build)
    suite = load_builtin_suite(SuiteOptions(cache_dir=tmp_path / "empty cache", device="cpu"))
    assert suite.base_model_id.endswith(SHIPPED_KEY) and not (tmp_path / "empty cache").exists()


def test_a_changed_shipped_file_is_refused_naming_it(tmp_path, monkeypatch):
    copy = tmp_path / "shipped"
    shutil.copytree(SHIPPED_ROOT, copy)
    changed = copy / f"builtin-{SHIPPED_KEY}" / "zoo" / "zoo.json"
    changed.write_text(changed.read_text() + " ")
    monkeypatch.setattr(shipped_suite, "SHIPPED_ROOT", copy)
    with pytest.raises(ValueError, match=str(changed)):
        shipped_directory(SHIPPED_KEY)
    assert shipped_directory("another key") is None  # other settings build into the cache as before


@pytest.mark.slow
def test_a_build_from_nothing_gives_the_shipped_bytes():
    """Minutes on CPU; run with `-m slow`. Where a CPU builds other bytes, the message lists the files that differ."""
    differing = rebuild(replace=False)
    assert not differing, "this machine builds other bytes than the shipped ones:\n" + "\n".join(differing)
