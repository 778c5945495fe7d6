"""Fits are reused across output folders through the fit cache, only when inputs and code are the same
(bench/fit_cache.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import fit_cache
from bench.cli import main
from bench.grid import cell_path

FUSION = ["--set", "fusion.epochs=1", "--set", "fusion.evaluations=1"]


def run(suite: Path, out: Path, cache: Path, *extra: str) -> int:
    return main(["--suite", str(suite / "suite.json"), "--methods", "fusion", "--tasks", "math", "--langs", "zh",
                 "--out", str(out), "--cache-dir", str(cache), "--device", "cpu", *FUSION, *extra])  # fmt: skip


def cell(out: Path, suite: Path) -> dict:
    return json.loads(cell_path(out, suite.name, "fusion", "math", "zh", 0).read_text())


def cached_states(cache: Path) -> list[Path]:
    return sorted(path.parent for path in (cache / fit_cache.FITS_FOLDER).rglob("DONE"))


@pytest.fixture()
def suite(tiny_suite, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_suite, tmp_path / "suite"))


def test_a_new_output_folder_reuses_the_fit_and_holds_its_state(suite, tmp_path):
    cache = tmp_path / "cache"
    assert run(suite, tmp_path / "first", cache, "--fit-cache") == 0
    first = cell(tmp_path / "first", suite)
    assert not first["reused_state"] and len(cached_states(cache)) == 1
    assert run(suite, tmp_path / "second", cache, "--fit-cache") == 0
    second = cell(tmp_path / "second", suite)
    assert second["reused_state"] and second["timings"]["fit"] == 0.0
    assert second["generations"] == first["generations"] and second["score"] == first["score"]
    state = tmp_path / "second" / "state" / suite.name / "fusion" / "math-zh-seed0"
    assert sorted(path.name for path in state.iterdir()) == sorted(path.name for path in cached_states(cache)[0].iterdir())


def test_a_fit_by_other_code_or_on_other_inputs_is_not_reused(suite, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    assert run(suite, tmp_path / "first", cache, "--fit-cache") == 0
    monkeypatch.setattr(fit_cache, "code_digest", lambda: "other code")
    assert run(suite, tmp_path / "second", cache, "--fit-cache") == 0
    assert not cell(tmp_path / "second", suite)["reused_state"]
    monkeypatch.undo()
    assert run(suite, tmp_path / "third", cache, "--fit-cache", "--set", "fusion.learning_rate=0.01") == 0
    assert not cell(tmp_path / "third", suite)["reused_state"] and len(cached_states(cache)) == 3


def test_force_refits_and_no_fit_cache_neither_reads_nor_writes(suite, tmp_path):
    cache = tmp_path / "cache"
    assert run(suite, tmp_path / "off", cache, "--no-fit-cache") == 0
    assert not (cache / fit_cache.FITS_FOLDER).exists()
    assert run(suite, tmp_path / "first", cache, "--fit-cache") == 0
    assert run(suite, tmp_path / "forced", cache, "--fit-cache", "--force") == 0
    assert not cell(tmp_path / "forced", suite)["reused_state"]
    assert run(suite, tmp_path / "uncached", cache, "--no-fit-cache") == 0
    assert not cell(tmp_path / "uncached", suite)["reused_state"]


def test_the_switch_defaults_on_and_the_environment_turns_it_off(monkeypatch):
    monkeypatch.delenv(fit_cache.ENVIRONMENT_SWITCH)
    assert fit_cache.fit_cache_default()
    monkeypatch.setenv(fit_cache.ENVIRONMENT_SWITCH, "0")
    assert not fit_cache.fit_cache_default()
