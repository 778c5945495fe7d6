"""One contract every registered method must pass, on the tiny random suite.

Fit (with a small budget), generate, save, load into a fresh copy of the base model, and generate the same text;
and only the method's own parameters may change the base model's behaviour.
"""

from __future__ import annotations


import pytest
import torch

from bench.generation import generate_completions
from methods.registry import Cell, load_all_methods, make_config
from tests.conftest import tiny_cell

# Small budgets so every method fits in seconds; every other option keeps its paper default.
FAST_OPTIONS = {
    "loraflow": {"epochs": "1", "evaluations": "1"},
    "loraflow_ceiling": {"epochs": "1", "evaluations": "1"},
    "lorahub": {"max_inference_step": "4"},
    "hydralora": {"train_data": "cell", "heads": "2", "epochs": "1"},
    "hydralora_tuned": {"train_data": "cell", "heads": "2", "epochs": "1", "router_epochs": "1"},
    "oracle": {"epochs": "1"},
    "fusion": {"epochs": "1", "evaluations": "1"},
    "xlora": {"epochs": "1", "evaluations": "1"},
    "skill_lora_finetuned": {"epochs": "1", "evaluations": "1"},
    "fresh_lora": {"epochs": "1", "evaluations": "1"},
}
METHOD_NAMES = sorted(load_all_methods())


def make_cell(suite, seed: int, shared_directory) -> Cell:
    train = suite.cells[("math", "zh")].train
    return tiny_cell(suite, seed=seed, composite_train=train * 4, shared_directory=shared_directory)


def completions(method, suite) -> list[str]:
    prompts = [example.prompt for example in suite.cells[("math", "zh")].test]
    return generate_completions(method.model, suite.tokenizer, prompts, max_new_tokens=5, batch_size=4)


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_method_contract(name, suite, tmp_path):
    method_class = load_all_methods()[name]
    config = make_config(method_class, FAST_OPTIONS.get(name, {}))
    base_before = {key: value.clone() for key, value in suite.model.state_dict().items()}
    method = method_class(make_cell(suite, 0, tmp_path / "shared"), config)
    if method_class.learns:
        method.fit()
        (tmp_path / "state").mkdir()  # the runner hands save() an existing, empty folder
        method.save(tmp_path / "state")
    first = completions(method, suite)
    assert len(first) == len(suite.cells[("math", "zh")].test)
    if method_class.learns:
        reloaded = method_class(make_cell(suite, 0, tmp_path / "shared"), config)
        reloaded.load(tmp_path / "state")
        assert completions(reloaded, suite) == first
    for key, value in suite.model.state_dict().items():
        assert torch.equal(value, base_before[key]), f"{name} changed the shared base model ({key})"
