"""The grid-cost projection runs the methods' own code on a suite and prints per-cell and whole-grid estimates."""

from __future__ import annotations

from bench.speed.grid_cost import main


def test_grid_cost_projection_prints_cells_and_total(tiny_suite, capsys):
    # 4 steps: LoraHub's COBYLA needs at least (adapters + 2) evaluations, and scipy warns below that
    main(["--suite", str(tiny_suite), "--cells", "math-zh,math-es", "--steps", "4", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert "| math-zh " in printed and "| math-es " in printed and "loraflow s/dev check" in printed
    assert "projected grid (base, language_lora, skill_lora, average, lorahub, loraflow)" in printed
