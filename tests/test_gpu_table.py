"""The prepared GPU script (bench/gpu_table.py) builds the whole table's grid; here on CPU at a tiny size."""

from __future__ import annotations

import json

import pytest

from bench.gpu_table import SEED_FREE_ROWS, SEED_ZERO_ROWS, TRAINED_ROWS, compare_cells, grid_commands, main
from methods.registry import load_all_methods

FAST = {"loraflow": "epochs=1", "loraflow_ceiling": "epochs=0.05", "oracle": "epochs=0.05", "fusion": "epochs=1",
        "xlora": "epochs=1", "skill_lora_finetuned": "epochs=1", "fresh_lora": "epochs=1", "lorahub": "max_inference_step=4",
        "hydralora": "train_data=cell", "hydralora_tuned": "train_data=cell"}  # fmt: skip


def test_the_table_has_every_row_with_its_seeds():
    commands = grid_commands(["builtin-smollm2-heldout", "builtin-smollm2"], ["--out", "x"])
    rows = {(command[1], method): command[5] for command in commands for method in command[3].split(",")}
    for suite in ("builtin-smollm2-heldout", "builtin-smollm2"):
        assert all(rows[(suite, method)] == "0" for method in SEED_FREE_ROWS)
        assert all(rows[(suite, method)] == "0,1,2" for method in TRAINED_ROWS)
    assert all(rows[("builtin-smollm2-heldout", method)] == "0" for method in SEED_ZERO_ROWS)
    assert not any(("builtin-smollm2", method) in rows for method in SEED_ZERO_ROWS)
    assert set(SEED_FREE_ROWS + TRAINED_ROWS + SEED_ZERO_ROWS) <= set(load_all_methods())


@pytest.mark.slow  # every row of the table on the tiny suite: minutes on CPU
def test_the_script_runs_the_grid_and_checks_against_committed_cells(tmp_path, capsys):
    options = [argument for method, setting in FAST.items() for argument in ("--set", f"{method}.{setting}")]
    tiny = ["--suites", "builtin-heldout", "--device", "cpu", "--dtype", "float32", "--batch-size", "8", "--limit", "2",
            "--tasks", "math", "--langs", "zh", "--skip-check", "--out", str(tmp_path / "gpu"), *options]  # fmt: skip
    assert main(tiny) == 0
    cells = {path.relative_to(tmp_path / "gpu" / "cells" / "builtin-heldout").as_posix()
             for path in (tmp_path / "gpu" / "cells").rglob("*.json")}  # fmt: skip
    expected = {f"{m}/math-zh-seed0.json" for m in SEED_FREE_ROWS + TRAINED_ROWS + SEED_ZERO_ROWS}
    expected |= {f"{m}/math-zh-seed{s}.json" for m in TRAINED_ROWS for s in (1, 2)}
    assert cells == expected
    for out in ("cpu", "check"):  # a cell against itself: the comparison reads both sides
        target = tmp_path / out / "cells" / "builtin-smollm2-heldout" / "skill_lora" / "math-zh-seed0.json"
        target.parent.mkdir(parents=True)
        target.write_text((tmp_path / "gpu/cells/builtin-heldout/skill_lora/math-zh-seed0.json").read_text())
    line = compare_cells(tmp_path / "cpu", tmp_path / "check", "skill_lora")
    assert "2/2 completions identical" in line and json.loads(target.read_text())["n"] == 2
