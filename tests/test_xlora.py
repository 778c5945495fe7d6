"""X-LoRA through peft: per-token scalings softmax(W h_base + b), from one classifier on the base model's last hidden
state, weight every adapter's delta in every layer; only the classifier trains."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file

from bench.generation import generate_completions
from bench.plots.fusion_weights import plot_fusion_weights
from methods.fusion_gate import read_trace_tensors
from methods.multi_lora import attach_adapters
from methods.xlora import XLora, XLoraMethodConfig
from tests.conftest import tiny_cell


def test_scalings_come_from_the_base_models_last_hidden_state_and_weight_every_layer(suite):
    method = XLora(tiny_cell(suite))
    with torch.no_grad():
        for parameter in method.classifier.values():
            parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(3)))
    input_ids = torch.randint(3, 250, (2, 7))
    with torch.no_grad():
        xlora_logits = method.model(input_ids=input_ids).logits
        base_hidden = suite.model(input_ids=input_ids, output_hidden_states=True).hidden_states[-1]
        scalings = torch.softmax(base_hidden @ method.classifier["layers.0.weight"].T + method.classifier["layers.0.bias"], dim=-1)
        reference = copy.deepcopy(suite.model)
        for slot in attach_adapters(reference, suite.cell_adapters("math", "zh")):
            slot.value = scalings  # (batch, seq, k): the same per-token weights in every layer
        expected = reference(input_ids=input_ids).logits
    torch.testing.assert_close(xlora_logits, expected, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(scalings[0, 0], scalings[0, 1])  # they do change from token to token


def test_fit_trains_the_classifier_only_and_keeps_the_best_dev_loss(suite):
    method = XLora(tiny_cell(suite), XLoraMethodConfig(learning_rate=5e-2, epochs=2, evaluations=2, warmup_ratio=0.0))
    before = {name: value.detach().clone() for name, value in method.model.named_parameters()}
    method.fit()
    changed = {name for name, value in method.model.named_parameters() if not torch.equal(value, before[name])}
    assert changed and all("internal_xlora_classifier" in name for name in changed)
    assert method.trainable_parameter_count == sum(p.numel() for p in method.classifier.values())
    assert len(method.history) == 2


def test_reload_checks_adapters(suite, tmp_path):
    method = XLora(tiny_cell(suite), XLoraMethodConfig(epochs=1, evaluations=1))
    method.fit()
    method.save(tmp_path)
    other = tiny_cell(suite)
    other.adapters = list(reversed(other.adapters))
    with pytest.raises(ValueError, match="xlora.json: X-LoRA classifier for adapters"):
        XLora(other).load(tmp_path)


def test_generation_records_the_per_token_scalings_as_traces_that_plot(suite, tmp_path):
    method = XLora(tiny_cell(suite))
    with torch.no_grad():
        for parameter in method.classifier.values():
            parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(5)))
    test = suite.cells[("math", "zh")].test[:3]
    generate_completions(method.model, suite.tokenizer, [e.prompt for e in test], max_new_tokens=6, batch_size=3,
                         batch_context=method.record_weights)  # fmt: skip
    assert sorted(method.traces) == [0, 1, 2]
    for trace in method.traces.values():
        assert trace.token_ids.shape[0] > trace.prompt_length  # an answer was generated and recorded
        with torch.no_grad():  # the scalings X-LoRA used: softmax(W h_base + b) on the unpadded tokens it read
            hidden = suite.model(input_ids=trace.token_ids[None], output_hidden_states=True).hidden_states[-1][0]
            expected = torch.softmax(hidden @ method.classifier["layers.0.weight"].T + method.classifier["layers.0.bias"], -1)
        torch.testing.assert_close(trace.weights, expected.expand_as(trace.weights), rtol=1e-4, atol=1e-4)
    tensors = method.recorded_weights([e.id for e in test])
    path = tmp_path / "traces" / suite.name / "xlora" / "math-zh-seed0.safetensors"
    path.parent.mkdir(parents=True)
    save_file(tensors, str(path))
    assert set(read_trace_tensors(load_file(str(path)))) == {e.id for e in test}
    paths = plot_fusion_weights(tmp_path)
    assert paths and all(p.parent == tmp_path / "plots" / suite.name / "xlora" and p.is_file() for p in paths)
