"""LoraHub: composition, the batched objective against the reference's way of computing it, search, export."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from peft import PeftModel, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from safetensors.torch import load_file

from bench.cli import main
from bench.plots.lorahub_weights import plot_lorahub_weights
from methods.lora_adapter import AdapterError, export_peft_adapter, load_lora_adapter
from methods.lora_composition import (
    attach_candidate_layers,
    compose_lora_tensors,
    composed_adapter,
    detach_candidate_layers,
    stack_candidate_tensors,
)
from methods.lorahub import LoraHub, LoraHubConfig, candidate_scorer, search_weights
from methods.registry import Cell, make_config
from methods.training import batches, encode_example
from tasks.examples import Example
from tests.conftest import TINY_BASE_ID, random_lora, tiny_llama

QUICK = {"max_inference_step": 8}


@pytest.fixture()
def adapter_dirs(tmp_path, tiny_tokenizer):
    """Three rank-4 adapters; the third has another alpha, so another scaling."""
    vocab = len(tiny_tokenizer)
    alphas = (8, 8, 16)
    return [random_lora(tiny_llama(vocab), tmp_path / f"a{i}", seed=10 + i, alpha=alpha) for i, alpha in enumerate(alphas)]


@pytest.fixture()
def adapters(adapter_dirs):
    return [load_lora_adapter(directory) for directory in adapter_dirs]


def examples(count: int = 6) -> list[Example]:
    return [Example(id=f"x{i}", prompt=f"Question: {i} + {i} = ?\nAnswer:", target=f" {2 * i} apples" * (1 + i % 2))
            for i in range(count)]  # fmt: skip


def make_cell(model, tokenizer, candidates, seed=0, zoo=()) -> Cell:
    return Cell(model=copy.deepcopy(model), tokenizer=tokenizer, adapters=list(candidates), train=examples(), dev=[],
                seed=seed, task="math", language="zh", zoo=list(zoo), base_model_id=TINY_BASE_ID)  # fmt: skip


def peft_logits(model, directory, input_ids):
    with torch.no_grad():
        return PeftModel.from_pretrained(copy.deepcopy(model), str(directory))(input_ids=input_ids).logits


def test_composed_A_and_B_are_the_weighted_sums(adapters):
    stacked = stack_candidate_tensors(adapters)
    weights = torch.tensor([[0.3, -1.2, 0.7], [1.5, 0.0, -0.4]])
    for name, tensors in stacked.items():
        A, B = compose_lora_tensors(tensors.A, tensors.B, weights)
        for row, w in enumerate(weights):
            expected_A = sum(w[i] * a.modules[name].A for i, a in enumerate(adapters))
            expected_B = sum(w[i] * a.modules[name].scaling * a.modules[name].B for i, a in enumerate(adapters))
            torch.testing.assert_close(A[row], expected_A)
            torch.testing.assert_close(B[row], expected_B)
    single = composed_adapter(stacked, weights[1], name="c")
    module = "model.layers.1.mlp.up_proj"
    torch.testing.assert_close(single.modules[module].A, compose_lora_tensors(stacked[module].A, stacked[module].B, weights[1])[0])
    assert single.modules[module].scaling == 1.0


def test_candidate_batched_layer_equals_one_candidate_at_a_time(tiny_model, adapters):
    model = copy.deepcopy(tiny_model)
    stacked = stack_candidate_tensors(adapters)
    bank = attach_candidate_layers(model, stacked)
    name = "model.layers.0.self_attn.v_proj"
    layer = model.get_submodule(name)
    weights = torch.tensor([[0.5, 0.1, -0.3], [-1.0, 1.0, 0.2], [0.0, 0.0, 1.5]])
    bank.compose(weights)
    x = torch.randn(3 * 2, 5, layer.base.in_features)
    output = layer(x)
    for c in range(3):
        A, B = compose_lora_tensors(stacked[name].A, stacked[name].B, weights[c])
        rows = x[2 * c : 2 * c + 2]
        torch.testing.assert_close(output[2 * c : 2 * c + 2], layer.base(rows) + rows @ A.T @ B.T, rtol=1e-5, atol=1e-6)
    detach_candidate_layers(model)
    assert isinstance(model.get_submodule(name), torch.nn.Linear)


def test_one_hot_weights_reproduce_that_adapter_exactly(tiny_model, adapter_dirs, adapters, tmp_path):
    model = copy.deepcopy(tiny_model)
    stacked = stack_candidate_tensors(adapters)
    attach_candidate_layers(model, stacked).compose(torch.eye(3))
    input_ids = torch.randint(3, 200, (2, 7))
    with torch.no_grad():
        batched = model(input_ids=input_ids.repeat(3, 1)).logits
    for index, directory in enumerate(adapter_dirs):
        expected = peft_logits(tiny_model, directory, input_ids)
        torch.testing.assert_close(batched[2 * index : 2 * index + 2], expected, rtol=1e-5, atol=1e-5)
    exported = export_peft_adapter(composed_adapter(stacked, torch.eye(3)[2], "c", TINY_BASE_ID), tmp_path / "c")
    expected = peft_logits(tiny_model, adapter_dirs[2], input_ids)
    torch.testing.assert_close(peft_logits(tiny_model, exported, input_ids), expected, rtol=1e-5, atol=1e-5)


def reference_objective(model, adapter_dirs, encoded, pad_token_id, weights, batch_size):
    """Slow reference, as lorahub/algorithm.py does it: compose a state dict, load it, per-batch mean loss / examples."""
    peft_model = PeftModel.from_pretrained(copy.deepcopy(model), str(adapter_dirs[0]))
    cache = [load_file(str(directory / "adapter_model.safetensors")) for directory in adapter_dirs]
    composed = {key: sum(w * state[key] for w, state in zip(weights, cache)) for key in cache[0]}
    set_peft_model_state_dict(peft_model, composed)
    total = 0.0
    with torch.no_grad():
        for batch in batches(encoded, batch_size, pad_token_id, torch.device("cpu")):
            total += float(peft_model(**batch).loss)
    return total / len(encoded) + 0.05 * sum(abs(w) for w in weights) / len(weights)


# The reference loads every candidate onto a model peft already wraps, and peft warns about exactly that.
@pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute in the model:UserWarning")
def test_the_reference_applies_the_last_candidates_scaling(tiny_model, adapter_dirs, adapters):
    """lorahub/algorithm.py `load_base_model_and_lora_modules`: the first candidate becomes the PeftModel, then every
    candidate is loaded again onto the same base model, which re-creates adapter "default" each time (peft 0.21.2);
    the scaling left in effect is the last candidate's, not the first's (methods/lora_composition.py's docstring)."""
    order = [adapter_dirs[2], adapter_dirs[0]]  # scalings 16/4 = 4, then 8/4 = 2
    base = copy.deepcopy(tiny_model)
    peft_model = PeftModel.from_pretrained(base, str(order[0]))
    for directory in order:
        PeftModel.from_pretrained(base, str(directory))
    in_effect = {module.scaling["default"] for module in peft_model.modules() if isinstance(module, LoraLayer)}
    assert in_effect == {adapters[0].modules["model.layers.0.self_attn.q_proj"].scaling} == {2.0}


def test_batched_objective_matches_the_reference_computation(tiny_model, tiny_tokenizer, adapter_dirs, adapters):
    dirs, same_scaling = adapter_dirs[:2], adapters[:2]  # the reference assumes one shared LoRA config
    encoded = [encode_example(tiny_tokenizer, example, 64) for example in examples(5)]
    pad = tiny_tokenizer.pad_token_id
    model = copy.deepcopy(tiny_model)
    candidates = np.array([[0.0, 0.0], [1.2, -0.4], [-0.7, 1.5]])
    config = LoraHubConfig(batch_size=2)  # batches of 2, 2 and 1 examples: the per-batch means differ from one mean
    with candidate_scorer(model, stack_candidate_tensors(same_scaling), encoded, pad, config) as scorer:
        ours = scorer(candidates)  # three candidates, one forward per batch
    expected = [reference_objective(tiny_model, dirs, encoded, pad, weights, batch_size=2) for weights in candidates]
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    assert not any("Candidate" in type(module).__name__ for module in model.modules())


@pytest.mark.parametrize("optimizer", ["NGOpt", "CMA"])
def test_search_is_deterministic_under_a_seed(tiny_model, tiny_tokenizer, adapters, optimizer):
    def fit(seed):
        method = LoraHub(make_cell(tiny_model, tiny_tokenizer, adapters, seed=seed), LoraHubConfig(optimizer=optimizer, **QUICK))
        method.fit()
        return method

    first, second = fit(0), fit(0)
    assert first.weights == second.weights and first.history == second.history
    assert len(first.history) == 8 and first.trainable_parameter_count == 3
    assert first.record["optimizer"] == ("Cobyla" if optimizer == "NGOpt" else "CMAbounded")
    if optimizer == "CMA":
        assert fit(1).history != first.history


# Asking nevergrad's CMA for one candidate at a time (the first search here, on purpose) makes cma see the told
# points as injected solutions it did not ask for, and warn; the searches still agree, which is the point.
@pytest.mark.filterwarnings("ignore:orphanated injected solution")
def test_a_cma_generation_scored_together_is_the_same_search():
    target = np.array([0.4, -0.8, 1.1])
    calls = []

    def score(weights):
        calls.append(len(weights))
        return ((weights - target) ** 2).sum(axis=1)

    one_at_a_time = search_weights(score, 3, LoraHubConfig(optimizer="CMA", max_candidates_per_forward=1), seed=3)
    assert set(calls) == {1}
    calls.clear()
    batched = search_weights(score, 3, LoraHubConfig(optimizer="CMA"), seed=3)
    assert max(calls) > 1 and sum(calls) == 40
    assert batched[1] == one_at_a_time[1]
    np.testing.assert_array_equal(batched[0], one_at_a_time[0])


def test_exported_adapter_reloads_with_peft_alone_and_gives_the_same_outputs(tiny_model, tiny_tokenizer, adapters, tmp_path):
    method = LoraHub(make_cell(tiny_model, tiny_tokenizer, adapters), LoraHubConfig(optimizer="CMA", **QUICK))
    method.fit()
    method.save(tmp_path)
    input_ids = torch.randint(3, 200, (2, 9))
    with torch.no_grad():
        ours = method.model(input_ids=input_ids).logits
    torch.testing.assert_close(peft_logits(tiny_model, tmp_path / "adapter", input_ids), ours, rtol=1e-5, atol=1e-5)
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["lora_alpha"] == config["r"] == 4 and config["base_model_name_or_path"] == TINY_BASE_ID
    reloaded = LoraHub(make_cell(tiny_model, tiny_tokenizer, adapters), LoraHubConfig(optimizer="CMA", **QUICK))
    reloaded.load(tmp_path)
    assert reloaded.weights == method.weights and reloaded.history == method.history
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model(input_ids=input_ids).logits, ours, rtol=1e-5, atol=1e-5)


def test_zoo_candidates_and_a_custom_regularizer(tiny_model, tiny_tokenizer, adapters):
    seen = []

    def regularizer(weights):
        seen.append(len(weights))
        return 0.0

    cell = make_cell(tiny_model, tiny_tokenizer, adapters[:2], zoo=adapters)
    method = LoraHub(cell, LoraHubConfig(candidates="zoo", **QUICK), regularizer=regularizer)
    method.fit()
    assert len(method.weights) == 3 and set(seen) == {3}
    assert method.record["adapters"] == [adapter.name for adapter in adapters]


def test_mismatched_ranks_fail_naming_the_adapters(tiny_model, tiny_tokenizer, adapters, tmp_path):
    odd = load_lora_adapter(random_lora(tiny_llama(len(tiny_tokenizer)), tmp_path / "rank2", seed=5, rank=2))
    with pytest.raises(AdapterError, match=r"ranks must match.*'a0' r=4.*'rank2' r=2"):
        LoraHub(make_cell(tiny_model, tiny_tokenizer, [adapters[0], odd]))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"lower_bound": 2.0}, "lorahub.lower_bound=2.0: must be finite and below upper_bound=1.5"),
        ({"upper_bound": float("nan")}, "lorahub.lower_bound"),
        ({"lower_bound": 0.5}, r"lorahub.initial_weight=0.0: must lie within \[lower_bound, upper_bound\]"),
        ({"max_inference_step": 0}, "lorahub.max_inference_step=0: must be at least 1"),
        ({"optimizer": "Nope"}, "lorahub.optimizer='Nope': not a nevergrad optimizer"),
        ({"candidates": "all"}, "lorahub.candidates='all': valid: cell, zoo"),
        ({"num_workers": 4}, "lorahub.num_workers=4: NGOpt then selects MetaModel"),
    ],
)
def test_bad_config_fails_clearly(options, message):
    with pytest.raises(ValueError, match=message):
        LoraHubConfig(**options)


def test_bounds_from_the_command_line_are_checked():
    with pytest.raises(ValueError, match="lorahub.lower_bound=3.0"):
        make_config(LoraHub, {"lower_bound": "3"})
    assert make_config(LoraHub, {"batch_size": "none", "optimizer": "CMA"}).batch_size is None


def test_grid_fits_saves_reuses_and_plots(tiny_suite, tmp_path):
    out = tmp_path / "results"
    arguments = ["--suite", str(tiny_suite), "--methods", "lorahub", "--tasks", "math", "--langs", "zh,es",
                 "--out", str(out), "--device", "cpu", "--set", "lorahub.max_inference_step=6"]  # fmt: skip
    assert main(arguments) == 0
    state = out / "state" / tiny_suite.name / "lorahub" / "math-zh-seed0"
    record = json.loads((state / "weights.json").read_text())
    assert record["adapters"] == ["zh", "math"] and len(record["history"]) == 6
    cell = json.loads((out / "cells" / tiny_suite.name / "lorahub" / "math-zh-seed0.json").read_text())
    assert cell["trainable_parameters"] == 2 and len(cell["fit_history"]) == 6
    paths = plot_lorahub_weights(out)
    assert paths and all(path.suffix == ".png" and path.stat().st_size > 0 for path in paths)
    (out / "cells" / tiny_suite.name / "lorahub" / "math-zh-seed0.json").unlink()
    assert main(arguments) == 0  # the cell is redone from the saved state, without a new search
    again = json.loads((out / "cells" / tiny_suite.name / "lorahub" / "math-zh-seed0.json").read_text())
    assert again["reused_state"] and again["generations"] == cell["generations"]
