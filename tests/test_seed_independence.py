"""Rows that learn nothing and decode greedily give the same cell at every seed, so the table runs them once
(bench/gpu_table.py SEED_FREE_ROWS)."""

from __future__ import annotations

import json

from bench.cli import main
from bench.gpu_table import SEED_FREE_ROWS
from bench.grid import cell_path
from methods.registry import load_all_methods


def test_seed_free_rows_learn_nothing_and_give_the_same_completions_at_every_seed(tiny_suite, tmp_path):
    assert not any(load_all_methods()[name].learns for name in SEED_FREE_ROWS if name != "ties")
    out = tmp_path / "out"
    arguments = ["--suite", str(tiny_suite), "--methods", ",".join(SEED_FREE_ROWS), "--tasks", "math", "--langs", "zh",
                 "--seeds", "0,1,7", "--out", str(out), "--device", "cpu"]  # fmt: skip
    assert main(arguments) == 0
    for method in SEED_FREE_ROWS:
        completions = [[generation["completion"] for generation in json.loads(
            cell_path(out, tiny_suite.name, method, "math", "zh", seed).read_text())["generations"]] for seed in (0, 1, 7)]
        assert completions[0] == completions[1] == completions[2], method
