"""LoRA-Flow: gates against a slow per-adapter reference, in training and in cached generation; save/load; traces."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from peft import PeftModel
from torch import nn

from bench.suites import SuiteOptions
from methods.fusion_gate import (
    FusionGate,
    default_gate_bias,
    example_trace,
    gate_weights,
    pack_strings,
    unpack_strings,
)
from methods.lora_adapter import load_lora_adapter
from methods.multi_lora import AdapterInputDropout, attach_adapters, set_static_weights
from methods.loraflow import GateFileError, LoraFlow, LoraFlowConfig, token_texts
from methods.registry import Cell
from methods.single_lora import attach_one
from methods.training import mean_target_loss
from tasks.examples import Example
from tests.conftest import TINY_BASE_ID, random_lora, tiny_llama

PROMPTS = ["Question: 3 + 4 = ?\nAnswer:", "小明有5个苹果", "Мария купила 6 яблок. María compró"]


class ReferenceGatedLayer(nn.Module):
    """Slow reference: a decoder layer that computes its gate weights inline for its ReferenceLoopLinears."""

    def __init__(self, layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor, state: dict):
        super().__init__()
        self.layer, self.state = layer, state
        self.weight, self.bias = nn.Parameter(weight.detach().clone()), nn.Parameter(bias.detach().clone())

    def forward(self, hidden_states, *args, **kwargs):
        self.state["weights"] = torch.softmax(hidden_states @ self.weight.T, dim=-1) + self.bias
        return self.layer(hidden_states, *args, **kwargs)


class ReferenceLoopLinear(nn.Module):
    """Slow reference: `h + sum_i w_i * s_i * B_i A_i x`, one adapter at a time; while training, with `dropout`
    (p, masks), adapter i sees x with its own mask from `masks(shape, device)`, drawn in adapter order like the
    official per-adapter `nn.Dropout`s."""

    def __init__(self, base: nn.Linear, loras: list, state: dict, dropout: tuple | None = None):
        super().__init__()
        self.base, self.loras, self.state, self.dropout = base, loras, state, dropout

    def forward(self, x):
        output = self.base(x)
        for index, lora in enumerate(self.loras):
            if lora is not None:
                weight = self.state["weights"][..., index : index + 1]
                output = output + weight * lora.scaling * (self.dropped(x) @ lora.A.T @ lora.B.T)
        return output

    def dropped(self, x):
        if self.dropout is None or not self.training:
            return x
        probability, masks = self.dropout
        return x * masks(x.shape, x.device).float() / (1 - probability)


def reference_model(base_model, adapters, gates, dropout: tuple | None = None) -> nn.Module:
    """A copy of the base model with per-adapter loops and inline gates copied from `gates`."""
    model = copy.deepcopy(base_model).requires_grad_(False)
    layers = model.model.layers
    for index in range(len(layers)):
        state: dict = {}
        prefix = f"model.layers.{index}."
        for name in sorted({name for adapter in adapters for name in adapter.modules if name.startswith(prefix)}):
            parent_name, _, attribute = name.rpartition(".")
            parent = model.get_submodule(parent_name)
            loras = [adapter.modules.get(name) for adapter in adapters]
            setattr(parent, attribute, ReferenceLoopLinear(getattr(parent, attribute), loras, state, dropout))
        layers[index] = ReferenceGatedLayer(layers[index], gates[index].weight, gates[index].bias, state)
    return model


@pytest.fixture()
def adapter_directories(tmp_path, tiny_tokenizer):
    vocab = len(tiny_tokenizer)
    return [random_lora(tiny_llama(vocab), tmp_path / f"adapter{i}", seed=10 + i, rank=2 + 2 * i) for i in range(2)]


@pytest.fixture()
def adapters(adapter_directories):
    return [load_lora_adapter(directory) for directory in adapter_directories]


def examples(count: int, offset: int = 0) -> list[Example]:
    numbers = range(offset, offset + count)
    return [Example(id=f"e{i}", prompt=f"Question: {i} + 1 = ?\nAnswer:", target=f" {i + 1}") for i in numbers]


def make_cell(model, tokenizer, adapters, base_model_id=TINY_BASE_ID) -> Cell:
    return Cell(
        model=copy.deepcopy(model), tokenizer=tokenizer, adapters=adapters, train=examples(8), dev=examples(4, 8),
        seed=0, task="math", language="zh", base_model_id=base_model_id,
    )  # fmt: skip


def random_loraflow(model, tokenizer, adapters, **options) -> LoraFlow:
    """A LoRA-Flow whose gates vary strongly from token to token."""
    method = LoraFlow(make_cell(model, tokenizer, adapters), LoraFlowConfig(weight_init_std=1.0, **options))
    with torch.no_grad():
        for gate in method.gates:
            gate.bias.normal_(0, 0.5)
    return method


def batch(tokenizer):
    return tokenizer(PROMPTS, return_tensors="pt", padding=True)


def test_gate_weights_are_softmax_plus_bias_and_an_untrained_gate_picks_the_last_adapter():
    hidden, weight, bias = torch.randn(2, 5, 16), torch.randn(3, 16), torch.randn(3)
    expected = torch.exp(hidden @ weight.T) / torch.exp(hidden @ weight.T).sum(-1, keepdim=True) + bias
    torch.testing.assert_close(gate_weights(hidden, weight, bias), expected)
    assert default_gate_bias(2).tolist() == [-0.5, 0.5]
    for k in (2, 3, 4):
        untrained = FusionGate(16, k)(torch.randn(4, 16))
        torch.testing.assert_close(untrained, torch.eye(k)[-1].expand(4, k), rtol=0, atol=1e-7)


def test_gate_parameter_count_is_layers_times_kd_plus_k(tiny_model, tiny_tokenizer, adapters):
    method = LoraFlow(make_cell(tiny_model, tiny_tokenizer, adapters))
    layers, hidden, k = tiny_model.config.num_hidden_layers, tiny_model.config.hidden_size, 2
    assert method.trainable_parameter_count == layers * (k * hidden + k)
    trainable = [name for name, parameter in method.model.named_parameters() if parameter.requires_grad]
    assert len(trainable) == 2 * layers and all(".fusion_gate." in name for name in trainable)


def test_fused_forward_and_gate_gradients_equal_the_per_adapter_reference(tiny_model, tiny_tokenizer, adapters):
    method = random_loraflow(tiny_model, tiny_tokenizer, adapters, adapter_dropout=0.0)  # the exact 2-matmul fusion
    reference = reference_model(tiny_model, adapters, method.gates)
    inputs = batch(tiny_tokenizer)
    method.model.train(), reference.train()
    logits = method.model(**inputs).logits
    expected = reference(**inputs).logits
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    (logits.float() ** 2).mean().backward()
    (expected.float() ** 2).mean().backward()
    for gate, reference_layer in zip(method.gates, reference.model.layers):
        torch.testing.assert_close(gate.weight.grad, reference_layer.weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(gate.bias.grad, reference_layer.bias.grad, rtol=1e-4, atol=1e-6)


def test_adapter_dropout_in_training_masks_each_adapter_input_like_the_reference(tiny_model, tiny_tokenizer, adapters):
    method = random_loraflow(tiny_model, tiny_tokenizer, adapters, adapter_dropout=0.5)
    seeded_like_the_cell = AdapterInputDropout(0.5, method.cell.seed).keep_mask
    reference = reference_model(tiny_model, adapters, method.gates, dropout=(0.5, seeded_like_the_cell))
    inputs = batch(tiny_tokenizer)
    with torch.no_grad():
        without_dropout = method.model(**inputs).logits  # eval mode: no dropout
    method.model.train(), reference.train()
    logits = method.model(**inputs).logits
    expected = reference(**inputs).logits
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=3e-5)  # float32 sums in another order
    assert not torch.allclose(logits, without_dropout, atol=1e-3)
    (logits.float() ** 2).mean().backward()
    (expected.float() ** 2).mean().backward()
    for gate, reference_layer in zip(method.gates, reference.model.layers):
        torch.testing.assert_close(gate.weight.grad, reference_layer.weight.grad, rtol=1e-4, atol=1e-6)


def test_adapter_dropout_masks_drop_entries_independently_with_probability_p_and_repeat_with_the_seed():
    shape = torch.Size([64, 1000])
    for probability in (0.1, 0.5):
        first, second = AdapterInputDropout(probability, 7), AdapterInputDropout(probability, 7)
        masks = [first.keep_mask(shape, torch.device("cpu")) for _ in range(3)]
        assert all(torch.equal(mask, second.keep_mask(shape, torch.device("cpu"))) for mask in masks)
        assert not torch.equal(masks[0], masks[1])  # each call draws anew
        dropped = 1.0 - torch.stack(masks).float().mean().item()  # 192000 entries: standard error below 0.0012
        assert abs(dropped - probability) < 0.006
        # independent entries: neighbours' joint drop rate is p^2, not p
        both = (~masks[0][:, :-1] & ~masks[0][:, 1:]).float().mean().item()
        assert abs(both - probability**2) < 0.006
    assert AdapterInputDropout(0.1, 7).keep_mask(torch.Size([3, 5]), torch.device("cpu")).shape == (3, 5)  # odd size
    assert not torch.equal(AdapterInputDropout(0.5, 1).keep_mask(shape, torch.device("cpu")),
                           AdapterInputDropout(0.5, 2).keep_mask(shape, torch.device("cpu")))  # fmt: skip


def test_adapter_dropout_is_off_in_eval_mode_and_seeded_in_training(tiny_model, tiny_tokenizer, adapters):
    def loraflow(dropout: float, **options) -> LoraFlow:
        config = LoraFlowConfig(weight_init_std=1.0, adapter_dropout=dropout, **options)
        return LoraFlow(make_cell(tiny_model, tiny_tokenizer, adapters), config)

    inputs = batch(tiny_tokenizer)
    with torch.no_grad():
        assert torch.equal(loraflow(0.1).model(**inputs).logits, loraflow(0.0).model(**inputs).logits)
        first, second = loraflow(0.1), loraflow(0.1)
        first.model.train(), second.model.train()
        masked = first.model(**inputs).logits
        assert torch.equal(masked, second.model(**inputs).logits)  # same seed, same masks
        assert not torch.equal(masked, first.model(**inputs).logits)  # the next step draws new ones
    short = dict(epochs=1, warmup_ratio=0.0, learning_rate=0.05)
    fits = [loraflow(dropout, **short) for dropout in (0.1, 0.1, 0.0)]
    for fit in fits:
        fit.fit()
        assert not fit.model.training and not any(module.training for module in fit.model.modules())
    assert all(torch.equal(a, b) for a, b in zip(fits[0].gate_parameters(), fits[1].gate_parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(fits[0].gate_parameters(), fits[2].gate_parameters()))
    with pytest.raises(ValueError, match=r"--set loraflow.adapter_dropout=1.0: must be in \[0, 1\)"):
        loraflow(1.0)


def test_shared_per_rank_weights_follow_in_place_changes_and_trainable_leaves(tiny_model, adapters):
    model = copy.deepcopy(tiny_model)
    slots = attach_adapters(model, adapters)
    name = "model.layers.0.mlp.up_proj"
    layer, x = model.get_submodule(name), torch.randn(2, 3, 32)
    set_static_weights(slots, [1.0, 0.0])
    first = layer(x)
    slots[0].value.copy_(torch.tensor([0.0, 1.0]))  # in place: the shared per-rank weights must be recomputed
    torch.testing.assert_close(layer(x), ReferenceLoopLinear(layer.base, [a.modules[name] for a in adapters],
                                                             {"weights": torch.tensor([0.0, 1.0])})(x))  # fmt: skip
    assert not torch.allclose(first, layer(x))
    slots[0].value = torch.nn.Parameter(torch.tensor([0.3, 0.7]))  # a trainable leaf reused over several steps
    for _ in range(2):
        layer(x).sum().backward()
    assert slots[0].value.grad is not None


def test_only_gate_parameters_receive_gradients(tiny_model, tiny_tokenizer, adapters):
    method = random_loraflow(tiny_model, tiny_tokenizer, adapters)
    method.model(**batch(tiny_tokenizer)).logits.sum().backward()
    with_gradient = {name for name, parameter in method.model.named_parameters() if parameter.grad is not None}
    assert with_gradient == {name for name, _ in method.model.named_parameters() if ".fusion_gate." in name}
    assert all(buffer.grad is None for buffer in method.model.buffers())


def no_cache_greedy(model, inputs, steps: int, eos_token_id: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Greedy decoding recomputing the whole left-padded sequence at every step (no KV cache); never picks eos."""
    input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
    step_logits = []
    for _ in range(steps):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, use_cache=False).logits[:, -1]
        step_logits.append(logits)
        allowed = logits.clone().index_fill_(-1, torch.tensor([eos_token_id]), float("-inf"))
        input_ids = torch.cat([input_ids, allowed.argmax(-1, keepdim=True)], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return input_ids, step_logits


@torch.no_grad()
def test_cached_generation_equals_no_cache_recomputation_and_the_reference(tiny_model, tiny_tokenizer, adapters):
    method = random_loraflow(tiny_model, tiny_tokenizer, adapters)
    inputs, steps = batch(tiny_tokenizer), 6
    with method.record_weights(dict(inputs, indices=[0, 1, 2])):
        generated = method.model.generate(**inputs, max_new_tokens=steps, min_new_tokens=steps, do_sample=False,
                                          pad_token_id=tiny_tokenizer.pad_token_id, output_logits=True,
                                          return_dict_in_generate=True)  # fmt: skip
    for model in (method.model, reference_model(tiny_model, adapters, method.gates)):
        sequences, step_logits = no_cache_greedy(model, inputs, steps, tiny_tokenizer.eos_token_id)
        assert torch.equal(sequences, generated.sequences)
        for cached, recomputed in zip(generated.logits, step_logits, strict=True):
            torch.testing.assert_close(cached, recomputed, rtol=1e-4, atol=1e-4)
    # The weights recorded step by step equal the gates applied to one no-cache pass over the final sequences.
    cached_traces = dict(method.traces)
    full_mask = torch.cat([inputs["attention_mask"], torch.ones(3, steps - 1, dtype=torch.long)], dim=1)
    full = {"input_ids": generated.sequences[:, :-1], "attention_mask": full_mask}
    with method.record_weights(dict(full, indices=[0, 1, 2])):
        method.model(**full, position_ids=(full_mask.cumsum(-1) - 1).clamp(min=0), use_cache=False)
    for index, trace in cached_traces.items():
        assert trace.weights.shape[1] == method.traces[index].weights.shape[1] and trace.weights.std() > 0.05
        torch.testing.assert_close(trace.weights, method.traces[index].weights, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_gate_forced_to_the_first_adapter_equals_that_adapter_alone(tiny_model, tiny_tokenizer, adapters,
                                                                   adapter_directories):  # fmt: skip
    method = LoraFlow(make_cell(tiny_model, tiny_tokenizer, adapters), LoraFlowConfig(bias_init=(0.5, -0.5)))
    language_lora = attach_one(make_cell(tiny_model, tiny_tokenizer, adapters), 0)
    peft_model = PeftModel.from_pretrained(copy.deepcopy(tiny_model), str(adapter_directories[0]))
    inputs = batch(tiny_tokenizer)
    logits = method.model(**inputs).logits
    # float32: the fused layer's stacked matmuls round in another order than one adapter's (1 of 34200 logits off by
    # 1.2e-6 with transformers 5.24); a wrong adapter or weight is off by orders of magnitude more
    torch.testing.assert_close(logits, language_lora(**inputs).logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(logits, peft_model(**inputs).logits, rtol=1e-5, atol=1e-5)
    settings = dict(max_new_tokens=5, do_sample=False, pad_token_id=tiny_tokenizer.pad_token_id)
    assert torch.equal(method.model.generate(**inputs, **settings), language_lora.generate(**inputs, **settings))


def test_gate_training_lowers_dev_loss(tiny_suite, tiny_tokenizer):
    from bench.grid import make_cell as grid_cell
    from bench.suites import load_suite

    suite = load_suite(str(tiny_suite / "suite.json"), SuiteOptions(device="cpu"))
    # Without adapter dropout it fell by 0.07 to 0.23 over six seeds of the fixture's weights (0.08-0.12 over cell
    # seeds 0-3); with the default dropout 0.1 by 0.014-0.046 over cell seeds 0-3: a noisier, slower descent here.
    for dropout, least_fall in ((0.0, 0.05), (0.1, 0.01)):
        cell = grid_cell(suite, "math", "zh", 0, tiny_suite / "unused")
        config = LoraFlowConfig(learning_rate=0.1, epochs=10, warmup_ratio=0.0, schedule="constant", adapter_dropout=dropout)
        method = LoraFlow(cell, config)
        before = mean_target_loss(method.model, cell.tokenizer, cell.dev)
        method.fit()
        after = mean_target_loss(method.model, cell.tokenizer, cell.dev)
        assert after < before - least_fall, (dropout, before, after)
        assert min(entry["dev_loss"] for entry in method.history) == pytest.approx(after, rel=1e-5)


def test_a_cells_gate_temperature_applies_in_generation_and_an_explicit_option_everywhere(
    tiny_model, tiny_tokenizer, adapters, tmp_path
):
    def fitted(cell_temperature, **options) -> LoraFlow:
        cell = dataclasses.replace(make_cell(tiny_model, tiny_tokenizer, adapters), gate_temperature=cell_temperature)
        method = LoraFlow(cell, LoraFlowConfig(weight_init_std=1.0, epochs=1, learning_rate=0.05, **options))
        method.fit()
        return method

    plain, paper_cell, explicit = fitted(None), fitted(1.1), fitted(1.1, temperature=1.1)
    assert [gate.temperature for gate in paper_cell.gates] == [1.1, 1.1]  # generation at the cell's value
    # training at T = 1, as the authors trained the gates they then evaluated at 1.1: the same gates as without it
    assert all(torch.equal(a, b) for a, b in zip(plain.gate_parameters(), paper_cell.gate_parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(plain.gate_parameters(), explicit.gate_parameters()))
    inputs = batch(tiny_tokenizer)
    with torch.no_grad():
        assert not torch.allclose(plain.model(**inputs).logits, paper_cell.model(**inputs).logits)
    paper_cell.save(tmp_path)
    assert json.loads((tmp_path / "gates.json").read_text())["temperature"] == 1.1
    with pytest.raises(GateFileError, match=r"temperatures \(training, generation\) are \(1.0, 1.1\)"):
        plain.load(tmp_path)


def test_save_load_round_trip(tiny_model, tiny_tokenizer, adapters, tmp_path):
    method = random_loraflow(tiny_model, tiny_tokenizer, adapters)
    method.history = [{"step": 1, "train_loss": 1.0, "dev_loss": 2.0}]
    method.save(tmp_path)
    assert json.loads((tmp_path / "gates.json").read_text())["adapters"] == ["adapter0", "adapter1"]
    loaded = LoraFlow(make_cell(tiny_model, tiny_tokenizer, adapters))
    loaded.load(tmp_path)
    inputs = batch(tiny_tokenizer)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**inputs).logits, method.model(**inputs).logits, rtol=0, atol=0)
    assert loaded.history == method.history


@pytest.mark.parametrize(
    "change, field", [("reversed", "adapters"), ("other_base", "base_model"), ("one_adapter", "adapters")]
)
def test_loading_onto_other_adapters_or_base_fails(tiny_model, tiny_tokenizer, adapters, tmp_path, change, field):
    LoraFlow(make_cell(tiny_model, tiny_tokenizer, adapters)).save(tmp_path)
    other_adapters = {"reversed": adapters[::-1], "one_adapter": adapters[:1]}.get(change, adapters)
    base_model_id = "another-base" if change == "other_base" else TINY_BASE_ID
    target = LoraFlow(make_cell(tiny_model, tiny_tokenizer, other_adapters, base_model_id))
    with pytest.raises(GateFileError, match=f"field '{field}'.*other adapters or another base model"):
        target.load(tmp_path)
    with pytest.raises(GateFileError, match="not found"):
        target.load(tmp_path / "missing")


def test_example_trace_drops_left_padding_and_steps_after_the_stop_token():
    pad, eos = 0, 9
    token_ids = torch.tensor([[pad, 5, 6, 7, eos, pad], [4, 5, 6, 7, 8, 8]])  # 3-wide prompts, then 3 fed-back tokens
    prompt_mask = torch.tensor([[0, 1, 1], [1, 1, 1]])
    weights = torch.arange(2 * 2 * 6 * 2, dtype=torch.float32).reshape(2, 2, 6, 2)
    first = example_trace(token_ids, weights, prompt_mask, 0, {pad, eos})
    assert first.prompt_length == 2 and first.token_ids.tolist() == [5, 6, 7, eos]
    torch.testing.assert_close(first.weights, weights[:, 0, 1:5])
    second = example_trace(token_ids, weights, prompt_mask, 1, {pad, eos})
    assert second.prompt_length == 3 and second.token_ids.tolist() == [4, 5, 6, 7, 8, 8]
    with pytest.raises(ValueError, match="left-padded"):
        example_trace(token_ids, weights, torch.tensor([[1, 1, 0], [1, 1, 1]]), 0, {pad, eos})


def test_token_texts_rebuild_the_text_with_cjk_and_cyrillic(tiny_tokenizer):
    text = "小明有5个苹果。Мария купила 6 яблок."
    token_ids = tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    texts = token_texts(tiny_tokenizer, token_ids)
    assert len(texts) == len(token_ids) and "".join(texts) == text and "苹" in texts
    packed = pack_strings(texts + [""])
    assert unpack_strings(packed["utf8"], packed["offsets"]) == texts + [""]
