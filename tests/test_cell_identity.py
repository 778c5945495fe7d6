"""A finished cell is reused only when everything that determines its result is unchanged (bench/cell_identity.py).

Each case below reused the old cell (exit 0, old numbers reported as new) before cell identities existed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.grid import cell_path
from bench.report import read_cells, write_report
from tests.conftest import random_lora, tiny_llama


def run(suite: Path, out: Path, methods: str = "base", *extra) -> int:
    return main(["--suite", str(suite), "--methods", methods, "--tasks", "math", "--langs", "zh", "--out", str(out),
                 "--device", "cpu", *extra])  # fmt: skip


def copy_suite(tiny_suite, where: Path) -> Path:
    return Path(shutil.copytree(tiny_suite, where))


def cell(out: Path, suite: Path, method: str = "base") -> dict:
    return json.loads(cell_path(out, suite.name, method, "math", "zh", 0).read_text())


def rewrite_json(path: Path, change) -> None:
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))


def cut_test_file(suite: Path) -> None:
    path = suite / "data/math_zh_test.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:3]))


def replace_adapter(suite: Path, tiny_tokenizer) -> None:
    target = suite / "zoo/language_zh"
    shutil.rmtree(target)
    random_lora(tiny_llama(len(tiny_tokenizer)), target, seed=99)


def fewer_new_tokens(suite: Path) -> None:
    rewrite_json(suite / "suite.json", lambda spec: spec["max_new_tokens"].update(math=1))


@pytest.mark.parametrize("change, changed_field", [
    (lambda suite, tokenizer: cut_test_file(suite), "data"),
    (replace_adapter, "adapters"),
    (lambda suite, tokenizer: fewer_new_tokens(suite), "generation"),
])  # fmt: skip
def test_a_changed_input_recomputes_the_cell_and_says_why(change, changed_field, tiny_suite, tiny_tokenizer, tmp_path,
                                                          caplog):  # fmt: skip
    suite, out = copy_suite(tiny_suite, tmp_path / "suite"), tmp_path / "out"
    assert run(suite, out, "language_lora") == 0
    before = cell(out, suite, "language_lora")
    change(suite, tiny_tokenizer)
    assert run(suite, out, "language_lora") == 0
    after = cell(out, suite, "language_lora")
    assert after["identity_key"] != before["identity_key"]
    assert f"({changed_field} changed)" in caplog.text
    if changed_field == "data":
        assert after["n"] == 3 and before["n"] == 6
    if changed_field == "adapters":
        assert after["adapters"]["zh"] != before["adapters"]["zh"]
    if changed_field == "generation":
        assert after["identity"]["generation"]["max_new_tokens"] == 1


def test_an_unchanged_rerun_reuses_every_cell(tiny_suite, tmp_path):
    suite, out = copy_suite(tiny_suite, tmp_path / "suite"), tmp_path / "out"
    assert run(suite, out) == 0
    path = cell_path(out, suite.name, "base", "math", "zh", 0)
    written = path.stat().st_mtime_ns
    assert run(suite, out) == 0
    assert path.stat().st_mtime_ns == written and not list(path.parent.glob("*.replaced-*"))


def test_two_suites_in_folders_of_the_same_name_do_not_share_cells(tiny_suite, tmp_path):
    first, second = copy_suite(tiny_suite, tmp_path / "a" / "suite"), copy_suite(tiny_suite, tmp_path / "b" / "suite")
    cut_test_file(second)
    out = tmp_path / "out"
    assert run(first, out) == 0 and cell(out, first)["n"] == 6
    assert run(second, out) == 0 and cell(out, second)["n"] == 3
    assert cell(out, second)["identity"]["suite"] == str((second / "suite.json").resolve())


def test_a_learned_state_is_refitted_when_the_adapters_change(tiny_suite, tiny_tokenizer, tmp_path):
    suite, out = copy_suite(tiny_suite, tmp_path / "suite"), tmp_path / "out"
    options = ["--set", "fusion.epochs=1", "--set", "fusion.evaluations=1"]
    assert run(suite, out, "fusion", *options) == 0
    assert run(suite, out, "fusion", *options, "--limit", "2") == 0  # only generation changed: the fit is reused
    assert cell(out, suite, "fusion")["reused_state"] is True
    replace_adapter(suite, tiny_tokenizer)
    assert run(suite, out, "fusion", *options, "--limit", "2") == 0
    assert cell(out, suite, "fusion")["reused_state"] is False


def test_the_report_refuses_to_mix_cells_of_different_inputs(tiny_suite, tmp_path):
    suite, out = copy_suite(tiny_suite, tmp_path / "suite"), tmp_path / "out"
    assert run(suite, out, "base,language_lora") == 0
    path = cell_path(out, suite.name, "base", "math", "zh", 0)
    rewrite_json(path, lambda record: record["identity"]["data"].update(test="another test file"))
    with pytest.raises(ValueError, match="different inputs") as error:
        write_report(out)
    assert str(path) in str(error.value) and "data" in str(error.value)
    assert len(read_cells(out)) == 2  # reading alone still works


def test_the_report_skips_and_names_files_that_are_not_cells(tiny_suite, tmp_path, caplog):
    suite, out = copy_suite(tiny_suite, tmp_path / "suite"), tmp_path / "out"
    assert run(suite, out) == 0
    stray = out / "cells" / suite.name / "base" / "notes.json"
    stray.write_text("{}")
    write_report(out)
    assert len(read_cells(out)) == 1 and str(stray) in caplog.text


def test_a_truncated_cell_file_is_named(tiny_suite, tmp_path):
    suite, out = copy_suite(tiny_suite, tmp_path / "suite"), tmp_path / "out"
    assert run(suite, out) == 0
    path = cell_path(out, suite.name, "base", "math", "zh", 0)
    path.write_text(path.read_text()[:50])
    with pytest.raises(ValueError, match=str(path)):
        write_report(out)
