"""`fusion`: task-level weights by gradient descent; equal weights are exactly `average`."""

from __future__ import annotations


import pytest
import torch

from methods.average import Average
from methods.fusion import Fusion, FusionConfig
from methods.registry import Cell
from methods.training import mean_target_loss
from tests.conftest import tiny_cell


def cell_of(suite, adapters=None) -> Cell:
    data = suite.cells[("math", "zh")]
    return tiny_cell(suite, adapters=adapters or suite.cell_adapters("math", "zh"), train=data.train * 4)


def logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids=input_ids).logits


def test_equal_weights_reproduce_average_exactly(suite):
    input_ids = torch.randint(3, 250, (2, 9))
    torch.testing.assert_close(logits(Fusion(cell_of(suite)).model, input_ids), logits(Average(cell_of(suite)).model, input_ids), rtol=0, atol=0)


def test_only_the_task_weights_train_and_dev_loss_drops(suite):
    method = Fusion(cell_of(suite), FusionConfig(learning_rate=5e-2, epochs=3, evaluations=3, warmup_ratio=0.0))
    before = mean_target_loss(method.model, suite.tokenizer, method.cell.dev)
    method.fit()
    assert [p for p in method.model.parameters() if p.requires_grad] == []
    assert method.weights.requires_grad and not torch.equal(method.weights.detach(), torch.tensor([0.5, 0.5]))
    assert min(entry["dev_loss"] for entry in method.history) <= before


def test_loading_onto_other_adapters_fails(suite, tmp_path):
    method = Fusion(cell_of(suite))
    method.save(tmp_path)
    other = Fusion(cell_of(suite, adapters=list(reversed(suite.cell_adapters("math", "zh")))))
    with pytest.raises(ValueError, match="fusion weights for adapters"):
        other.load(tmp_path)
