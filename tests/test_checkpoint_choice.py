"""Checkpoint choice by dev accuracy (the official LoRA-Flow choice; the paper suite's default) beside dev loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.cell_identity import cell_identity, cell_inputs, suite_inputs
from bench.generation import generate_completions
from bench.grid import _config_record, dev_accuracy, make_cell
from methods.finetuned_lora import SkillLoraFinetuned
from methods.loraflow import LoraFlow, LoraFlowConfig
from methods.registry import make_config
from methods.training import TrainingConfig, train_parameters
from tasks.examples import Example
from tasks.scoring import extract_final_number
from tests.conftest import tiny_cell

BUDGET = dict(epochs=2.0, batch_size=2, learning_rate=0.05, warmup_ratio=0.0, evaluations=4)


def test_the_evaluation_with_the_best_dev_accuracy_is_kept_ties_going_to_the_lower_dev_loss(suite):
    cell = tiny_cell(suite)
    parameters = [cell.model.model.norm.weight.requires_grad_(True)]
    accuracies, snapshots = iter([10.0, 50.0, 50.0, 20.0]), []

    def scripted_accuracy(model):
        assert model is cell.model and not model.training  # generation runs in eval mode
        snapshots.append(parameters[0].detach().clone())
        return next(accuracies)

    history = train_parameters(cell.model, cell.tokenizer, parameters, cell.train, cell.dev, TrainingConfig(**BUDGET),
                               seed=0, dev_accuracy=scripted_accuracy)  # fmt: skip
    assert [record["dev_accuracy"] for record in history] == [10.0, 50.0, 50.0, 20.0]
    tied = [1, 2]
    chosen = min(tied, key=lambda index: history[index]["dev_loss"])
    assert torch.equal(parameters[0], snapshots[chosen])
    assert not torch.equal(snapshots[chosen], snapshots[3])  # the final parameters were not simply kept


def test_without_a_dev_scorer_the_lowest_dev_loss_is_kept_as_before(suite):
    cell = tiny_cell(suite)
    parameters = [cell.model.model.norm.weight.requires_grad_(True)]
    history = train_parameters(cell.model, cell.tokenizer, parameters, cell.train, cell.dev, TrainingConfig(**BUDGET),
                               seed=0)  # fmt: skip
    assert all("dev_accuracy" not in record for record in history)


def test_choosing_by_dev_accuracy_without_dev_examples_is_refused(suite):
    cell = tiny_cell(suite)
    with pytest.raises(ValueError, match="dev accuracy needs dev examples"):
        train_parameters(cell.model, cell.tokenizer, [cell.model.model.norm.weight.requires_grad_(True)], cell.train, [],
                         TrainingConfig(**BUDGET), seed=0, dev_accuracy=lambda model: 0.0)  # fmt: skip


def test_loraflow_measures_dev_accuracy_at_its_generation_temperature_and_keeps_the_best_gates(suite, tmp_path):
    cell = make_cell(suite, "math", "zh", 0, tmp_path / "shared")
    cell.gate_temperature = 1.7
    accuracies, seen, snapshots = iter([30.0, 80.0, 10.0, 20.0]), [], []
    method = LoraFlow(cell, make_config(LoraFlow, {"checkpoint_choice": "dev_accuracy", "epochs": "2",
                                                   "learning_rate": "0.05", "evaluations": "4"}))  # fmt: skip

    def scripted_accuracy(model):
        seen.append({gate.temperature for gate in method.gates})
        snapshots.append([gate.weight.detach().clone() for gate in method.gates])
        return next(accuracies)

    cell.dev_accuracy = scripted_accuracy
    method.fit()
    assert seen == [{1.7}] * 4  # scored as the test is generated; trained at T = 1 between checks
    assert [record["dev_accuracy"] for record in method.history] == [30.0, 80.0, 10.0, 20.0]
    assert all(torch.equal(gate.weight, kept) for gate, kept in zip(method.gates, snapshots[1]))
    assert not all(torch.equal(kept, last) for kept, last in zip(snapshots[1], snapshots[3]))


def test_a_cells_dev_accuracy_is_its_dev_split_generated_and_scored_as_the_test_is(suite):
    data = suite.cells[("math", "zh")]
    prompts = [example.prompt for example in data.dev]
    completions = generate_completions(suite.model, suite.tokenizer, prompts, *suite.answer_limits("math"))
    answered = [Example(id=e.id, prompt=e.prompt, target=e.target, answer=extract_final_number(c) or "none")
                for e, c in zip(data.dev, completions)]  # fmt: skip
    half = [*answered[: len(answered) // 2], *data.dev[len(answered) // 2 :]]  # gold answers the model gives, first half
    suite.cells[("math", "zh")] = dataclasses.replace(data, dev=half)
    try:
        expected = 100.0 * sum(c is not None and extract_final_number(c) == e.answer
                               for e, c in zip(half, completions)) / len(half)  # fmt: skip
        assert expected > 0 and dev_accuracy(suite, "math", "zh", suite.model) == expected
    finally:
        suite.cells[("math", "zh")] = data


def test_the_suites_choice_applies_unless_an_option_overrides_it(suite, tmp_path):
    cell = make_cell(suite, "math", "zh", 0, tmp_path / "shared")
    assert LoraFlowConfig().dev_accuracy_for(cell) is None  # no suite choice: dev loss
    cell.checkpoint_choice = "dev_accuracy"  # as the paper suite sets it
    assert LoraFlowConfig().dev_accuracy_for(cell) is cell.dev_accuracy
    assert LoraFlowConfig(checkpoint_choice="dev_loss").dev_accuracy_for(cell) is None
    cell.dev_accuracy = None
    with pytest.raises(ValueError, match="checkpoint_choice=dev_accuracy: cell math/zh has no dev examples or no dev"):
        LoraFlowConfig().dev_accuracy_for(cell)


def test_an_unknown_checkpoint_choice_is_named():
    with pytest.raises(ValueError, match="checkpoint_choice='best'.*dev_loss, dev_accuracy"):
        make_config(SkillLoraFinetuned, {"checkpoint_choice": "best"})


def test_the_option_at_its_default_leaves_committed_cells_identities_unchanged(suite):
    shared = suite_inputs(suite)
    inputs = cell_inputs(suite, shared, "math", "zh")
    default = cell_identity("loraflow", _config_record(LoraFlowConfig()), None, 0, inputs)
    assert "checkpoint_choice" not in default["options"] and "checkpoint_choice" not in default["data"]
    chosen = cell_identity("loraflow", _config_record(LoraFlowConfig(checkpoint_choice="dev_accuracy")), None, 0, inputs)
    assert chosen["options"]["checkpoint_choice"] == "dev_accuracy"
    suite.cells[("math", "zh")].checkpoint_choice = "dev_accuracy"
    try:
        assert cell_inputs(suite, shared, "math", "zh")["data"]["checkpoint_choice"] == "dev_accuracy"
    finally:
        suite.cells[("math", "zh")].checkpoint_choice = None
