"""PEFT merges: our rows equal peft's own add_weighted_adapter on the adapter folders; cat's defining properties."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import PeftModel

from bench.suites import SuiteOptions, load_suite
from methods.average import Average
from methods.peft_merges import PeftMergeConfig
from methods.registry import Cell, load_all_methods


@pytest.fixture(scope="module")
def suite(tiny_suite):
    return load_suite(str(tiny_suite), SuiteOptions(device="cpu"))


def cell_of(suite) -> Cell:
    data = suite.cells[("math", "zh")]
    return Cell(model=copy.deepcopy(suite.model), tokenizer=suite.tokenizer, adapters=suite.cell_adapters("math", "zh"),
                train=data.train, dev=data.dev, seed=0, base_model_id=suite.base_model_id)  # fmt: skip


def logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.mark.parametrize("name", ["cat", "linear", "svd", "ties", "dare_ties", "dare_linear"])
def test_merge_equals_peft_on_the_adapter_folders(name, suite):
    method_class = load_all_methods()[name]
    ours = method_class(cell_of(suite), PeftMergeConfig(weights=(0.7, 0.6)))
    entries = [suite.zoo.find("language", "zh"), suite.zoo.find("skill", "math")]
    reference = PeftModel.from_pretrained(copy.deepcopy(suite.model), str(suite.zoo.adapter_directory(entries[0])), adapter_name=entries[0].name)
    reference.load_adapter(str(suite.zoo.adapter_directory(entries[1])), adapter_name=entries[1].name)
    torch.manual_seed(0)
    density = 0.5 if ("ties" in name or "dare" in name) else None
    reference.add_weighted_adapter([e.name for e in entries], [0.7, 0.6], "merged", combination_type=name, density=density)
    reference.set_adapter("merged")
    input_ids = torch.randint(3, 250, (2, 8))
    torch.testing.assert_close(logits(ours.model, input_ids), logits(reference, input_ids), rtol=1e-5, atol=1e-5)


def test_cat_with_equal_weights_is_average_and_one_hot_is_that_adapter(suite):
    input_ids = torch.randint(3, 250, (2, 8))
    CatMerge = load_all_methods()["cat"]
    cat = CatMerge(cell_of(suite))
    torch.testing.assert_close(logits(cat.model, input_ids), logits(Average(cell_of(suite)).model, input_ids), rtol=1e-5, atol=1e-5)
    first = Average(cell_of(suite), Average.Config(weights=(1.0, 0.0)))
    torch.testing.assert_close(logits(CatMerge(cell_of(suite), PeftMergeConfig(weights=(1.0, 0.0))).model, input_ids),
                               logits(first.model, input_ids), rtol=1e-5, atol=1e-5)  # fmt: skip


def test_wrong_weight_count_is_named(suite):
    with pytest.raises(ValueError, match="--set ties.weights: got 3 weights for 2 adapters"):
        load_all_methods()["ties"](cell_of(suite), PeftMergeConfig(weights=(1.0, 1.0, 1.0)))
