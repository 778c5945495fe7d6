"""PEFT merges: our rows equal peft's own add_weighted_adapter on the adapter folders; cat's defining properties."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import PeftModel

from methods.average import Average
from methods.lorahub import LoraHub, LoraHubConfig
from methods.peft_merges import PeftMergeConfig
from methods.registry import load_all_methods
from methods.lora_adapter import AdapterError, load_lora_adapter
from tests.conftest import random_lora, tiny_cell, tiny_llama


def merged(name: str, suite, config: PeftMergeConfig | None = None):
    method = load_all_methods()[name](tiny_cell(suite), config)
    method.fit()
    return method


def logits(model, input_ids):
    with torch.no_grad():
        return model(input_ids=input_ids).logits


@pytest.mark.parametrize("name", ["cat", "linear", "svd", "ties", "dare_ties", "dare_linear"])
def test_merge_equals_peft_on_the_adapter_folders(name, suite):
    ours = merged(name, suite, PeftMergeConfig(weights=(0.7, 0.6)))
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
    cat = merged("cat", suite)
    torch.testing.assert_close(logits(cat.model, input_ids), logits(Average(tiny_cell(suite)).model, input_ids), rtol=1e-5, atol=1e-5)
    first = Average(tiny_cell(suite), Average.Config(weights=(1.0, 0.0)))
    torch.testing.assert_close(logits(merged("cat", suite, PeftMergeConfig(weights=(1.0, 0.0))).model, input_ids),
                               logits(first.model, input_ids), rtol=1e-5, atol=1e-5)  # fmt: skip


def test_wrong_weight_count_is_named(suite):
    with pytest.raises(ValueError, match="--set ties.weights: got 3 weights for 2 adapters"):
        load_all_methods()["ties"](tiny_cell(suite), PeftMergeConfig(weights=(1.0, 1.0, 1.0)))


def test_lorahub_searched_weights_are_lorahubs_own_and_cat_applies_them_exactly(suite):
    searched = merged("cat", suite, PeftMergeConfig(weight_search="lorahub", search_budget=6))
    hub = LoraHub(tiny_cell(suite), LoraHubConfig(max_inference_step=6))
    hub.fit()
    assert searched.record["weights"] == hub.weights and len(searched.history) == 6
    input_ids = torch.randint(3, 250, (2, 8))
    static = Average(tiny_cell(suite), Average.Config(weights=tuple(hub.weights)))
    torch.testing.assert_close(logits(searched.model, input_ids), logits(static.model, input_ids), rtol=1e-5, atol=1e-5)


def test_saved_merge_reloads_to_the_same_model(suite, tmp_path):
    searched = merged("ties", suite, PeftMergeConfig(weight_search="lorahub", search_budget=4))
    searched.save(tmp_path)
    reloaded = load_all_methods()["ties"](tiny_cell(suite), PeftMergeConfig(weight_search="lorahub", search_budget=4))
    reloaded.load(tmp_path)
    input_ids = torch.randint(3, 250, (2, 8))
    assert torch.equal(logits(searched.model, input_ids), logits(reloaded.model, input_ids))


def test_given_weights_and_weight_search_exclude_each_other(suite):
    with pytest.raises(ValueError, match="--set dare_ties.weights and dare_ties.weight_search=lorahub"):
        load_all_methods()["dare_ties"](tiny_cell(suite), PeftMergeConfig(weights=(0.5, 0.5), weight_search="lorahub"))
    with pytest.raises(ValueError, match="--set svd.weight_search=grid: valid: none, lorahub"):
        load_all_methods()["svd"](tiny_cell(suite), PeftMergeConfig(weight_search="grid"))


def test_a_merge_peft_cannot_do_names_the_adapters_and_the_reason(suite, tmp_path):
    vocab = suite.model.config.vocab_size
    other = load_lora_adapter(random_lora(tiny_llama(vocab), tmp_path / "rank2", seed=7, rank=2), name="rank2")
    adapters = [suite.cell_adapters("math", "zh")[0], other]
    linear = load_all_methods()["linear"](tiny_cell(suite, adapters=adapters))
    with pytest.raises(AdapterError, match=r"linear: peft cannot merge adapters \['zh', 'rank2'\]: .*same r"):
        linear.fit()
    load_all_methods()["cat"](tiny_cell(suite, adapters=adapters)).fit()  # cat stacks ranks: any ranks go
