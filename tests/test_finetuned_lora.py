"""The fine-tuning rows (methods/finetuned_lora.py) and LoRA-Flow's official optimiser (methods/loraflow.py)."""

from __future__ import annotations

import torch

from methods.finetuned_lora import FreshLora, SkillLoraFinetuned, skill_adapter_as_peft
from methods.loraflow import LoraFlowConfig
from methods.registry import load_all_methods, make_config
from methods.single_lora import attach_one
from methods.training import TrainingConfig, train_parameters
from tests.conftest import tiny_cell


def test_the_skill_adapter_as_peft_computes_what_the_skill_adapter_alone_does(suite):
    inputs = suite.tokenizer(["Question: 3 + 1 = ?\nAnswer:"], return_tensors="pt")
    alone = attach_one(tiny_cell(suite), 1)
    wrapped = skill_adapter_as_peft(tiny_cell(suite)).eval()
    torch.testing.assert_close(wrapped(**inputs).logits, alone(**inputs).logits, rtol=1e-5, atol=1e-5)
    trainable = {name for name, parameter in wrapped.named_parameters() if parameter.requires_grad}
    assert trainable and all(".lora_A." in name or ".lora_B." in name for name in trainable)


def test_fine_tuning_starts_from_the_skill_adapter_and_a_fresh_lora_from_zero(suite):
    config = make_config(SkillLoraFinetuned, {"epochs": "1", "evaluations": "1"})
    skill = tiny_cell(suite).adapters[-1]
    tuned, fresh = SkillLoraFinetuned(tiny_cell(suite), config), FreshLora(tiny_cell(suite), config)
    tuned.fit(), fresh.fit()
    module_name, lora = next(iter(skill.modules.items()))
    tuned_B = tuned.model.base_model.model.get_submodule(module_name).lora_B["default"].weight
    fresh_B = fresh.model.base_model.model.get_submodule(module_name).lora_B["default"].weight
    assert tuned_B.shape == fresh_B.shape == lora.B.shape  # the same rank as the skill adapter
    assert not torch.equal(tuned_B, lora.B)  # trained
    assert (tuned_B - lora.B).abs().max() < lora.B.abs().max()  # ... from the skill adapter, not from zero
    assert tuned.trainable_parameter_count == fresh.trainable_parameter_count == skill.parameter_count


def test_loraflow_trains_with_the_official_optimiser():
    training = LoraFlowConfig().training()
    assert training.adam_betas == (0.9, 0.95) and training.adam_epsilon == 1e-5 and training.max_grad_norm == 1.0
    for name in ("fusion", "xlora", "skill_lora_finetuned", "fresh_lora"):  # the rows trained "the same way"
        assert make_config(load_all_methods()[name], {}).training() == training


def test_training_uses_the_configured_betas_epsilon_and_clipping(suite, monkeypatch):
    seen = {"adamw": [], "clip": []}
    real_adamw, real_clip = torch.optim.AdamW, torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.optim, "AdamW", lambda *a, **k: seen["adamw"].append(k) or real_adamw(*a, **k))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda p, n: seen["clip"].append(n) or real_clip(p, n))
    cell = tiny_cell(suite)
    parameters = [next(cell.model.parameters())]
    parameters[0].requires_grad_(True)
    config = TrainingConfig(batch_size=2, epochs=1, evaluations=0, adam_betas=(0.8, 0.9), adam_epsilon=1e-4,
                            max_grad_norm=0.5)  # fmt: skip
    train_parameters(cell.model, cell.tokenizer, parameters, cell.train, [], config, seed=0)
    assert seen["adamw"][0]["betas"] == (0.8, 0.9) and seen["adamw"][0]["eps"] == 1e-4
    assert seen["clip"] and set(seen["clip"]) == {0.5}


def test_a_budget_that_trains_nothing_is_refused_naming_the_option():
    for option, value in (("epochs", "-1"), ("epochs", "0"), ("batch_size", "0"), ("evaluations", "-1")):
        try:
            make_config(load_all_methods()["loraflow"], {option: value})
        except ValueError as error:
            assert f"loraflow.{option}={value}" in str(error) and option in str(error).split(":", 1)[1]
        else:
            raise AssertionError(f"loraflow.{option}={value} was accepted")
