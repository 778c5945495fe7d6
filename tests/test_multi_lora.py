"""Fused multi-LoRA layers against PEFT itself and against the slow per-adapter reference."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import PeftModel

from methods.lora_adapter import load_lora_adapter
from methods.multi_lora import MultiLoraLinear, attach_adapters, set_static_weights
from tests.conftest import random_lora, tiny_llama


def reference_mixed_output(layer: MultiLoraLinear, adapters, module_name, x, weights):
    """Slow reference: h + sum_i w_i * s_i * B_i A_i x, one adapter at a time."""
    output = layer.base(x)
    for index, adapter in enumerate(adapters):
        lora = adapter.modules.get(module_name)
        if lora is not None:
            output = output + weights[..., index : index + 1] * lora.scaling * (x @ lora.A.T @ lora.B.T)
    return output


@pytest.fixture()
def two_adapters(tmp_path, tiny_tokenizer):
    directories = [random_lora(tiny_llama(len(tiny_tokenizer)), tmp_path / f"a{i}", seed=i, rank=2 + 2 * i) for i in range(2)]
    return directories, [load_lora_adapter(d) for d in directories]


def peft_logits(model, directory, input_ids):
    peft_model = PeftModel.from_pretrained(copy.deepcopy(model), str(directory))
    with torch.no_grad():
        return peft_model(input_ids=input_ids).logits


def fused_logits(model, adapters, weights, input_ids):
    fused = copy.deepcopy(model)
    set_static_weights(attach_adapters(fused, adapters), weights)
    with torch.no_grad():
        return fused(input_ids=input_ids).logits


def test_one_hot_weights_equal_that_adapter_in_peft(tiny_model, two_adapters):
    directories, adapters = two_adapters
    input_ids = torch.randint(3, 200, (2, 7))
    for index in range(2):
        weights = [1.0 if i == index else 0.0 for i in range(2)]
        expected = peft_logits(tiny_model, directories[index], input_ids)
        torch.testing.assert_close(fused_logits(tiny_model, adapters, weights, input_ids), expected, rtol=1e-5, atol=1e-5)


def test_equal_weights_give_mean_of_adapter_outputs(tiny_model, two_adapters):
    _, adapters = two_adapters
    model = copy.deepcopy(tiny_model)
    slots = attach_adapters(model, adapters)
    set_static_weights(slots, [0.5, 0.5])
    layer = model.model.layers[0].self_attn.q_proj
    x = torch.randn(3, 5, layer.base.in_features)
    deltas = [lora.scaling * (x @ lora.A.T @ lora.B.T) for lora in (a.modules["model.layers.0.self_attn.q_proj"] for a in adapters)]
    expected = layer.base(x) + (deltas[0] + deltas[1]) / 2
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_fused_per_token_weights_equal_reference_loop(tiny_model, two_adapters):
    _, adapters = two_adapters
    model = copy.deepcopy(tiny_model)
    slots = attach_adapters(model, adapters)
    name = "model.layers.1.mlp.down_proj"
    layer = model.get_submodule(name)
    x = torch.randn(2, 6, layer.base.in_features)
    weights = torch.softmax(torch.randn(2, 6, 2), dim=-1)
    slots[1].value = weights
    torch.testing.assert_close(layer(x), reference_mixed_output(layer, adapters, name, x, weights), rtol=1e-5, atol=1e-6)


def test_adapters_on_different_modules_and_ranks(tiny_model, tmp_path, tiny_tokenizer):
    first = load_lora_adapter(random_lora(tiny_llama(len(tiny_tokenizer)), tmp_path / "q", seed=3, rank=3, targets=["q_proj"]))
    second = load_lora_adapter(random_lora(tiny_llama(len(tiny_tokenizer)), tmp_path / "v", seed=4, rank=5, targets=["v_proj", "q_proj"]))
    model = copy.deepcopy(tiny_model)
    slots = attach_adapters(model, [first, second])
    set_static_weights(slots, [0.3, 0.7])
    for name in ("model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"):
        layer = model.get_submodule(name)
        x = torch.randn(1, 4, layer.base.in_features)
        expected = reference_mixed_output(layer, [first, second], name, x, torch.tensor([0.3, 0.7]))
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_base_weights_stay_frozen(tiny_model, two_adapters):
    _, adapters = two_adapters
    model = copy.deepcopy(tiny_model)
    attach_adapters(model, adapters)
    assert not [name for name, parameter in model.named_parameters() if parameter.requires_grad]
