"""`loraflow_ceiling`: LoRA-Flow's gates trained on the suite's composite data, and the report column it bounds."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from bench.report import display_table, summary_table
from methods.loraflow_ceiling import LoraFlowCeiling, LoraFlowCeilingConfig
from tests.conftest import tiny_cell


def test_ceiling_trains_its_gates_on_the_composite_data_not_the_cells_few_examples(suite):
    cell = suite.cells[("math", "zh")]
    composite = cell.test * 3  # any examples other than the cell's train split
    method = LoraFlowCeiling(tiny_cell(suite, composite_train=composite), LoraFlowCeilingConfig(epochs=1, max_examples=5))
    assert method.flow.cell.train == composite[:5] and method.flow.cell.dev == cell.dev
    before = [gate.weight.detach().clone() for gate in method.flow.gates]
    method.fit()
    assert any(not torch.equal(gate.weight, start) for gate, start in zip(method.flow.gates, before))
    assert method.trainable_parameter_count == method.flow.trainable_parameter_count > 0


def test_ceiling_without_composite_data_is_refused_naming_the_cell(suite):
    method = LoraFlowCeiling(tiny_cell(suite, composite_train=[]), LoraFlowCeilingConfig(epochs=1))
    with pytest.raises(ValueError, match="loraflow_ceiling: the suite has no composite training data for math/zh"):
        method.fit()


def test_report_shows_the_share_of_the_gap_to_the_ceiling_each_row_closes():
    scores = {"skill_lora": 20.0, "language_lora": 5.0, "lorahub": 25.0, "loraflow_ceiling": 40.0, "oracle": 60.0}
    cells = pd.DataFrame(
        [{"method": m, "suite": "s", "task": "math", "language": "zh", "seed": 0, "metric": "accuracy", "score": v, "n": 10}
         for m, v in scores.items()]
    )  # fmt: skip
    summary = summary_table(cells)
    assert summary.loc["lorahub", "ceiling gap closed"] == pytest.approx(0.25)
    assert summary.loc["lorahub", "gap closed"] == pytest.approx(0.125)
    assert summary.loc["loraflow_ceiling", "ceiling gap closed"] == 1
    assert list(summary.index).index("loraflow_ceiling") == list(summary.index).index("oracle") - 1
    assert display_table(summary, with_ci=False).loc["lorahub", "ceiling gap closed"] == "0.25"
    without_ceiling = display_table(summary_table(cells[cells.method != "loraflow_ceiling"]), with_ci=False)
    assert "ceiling gap closed" not in without_ceiling.columns
