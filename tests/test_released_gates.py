"""The authors' released gate files (BMTrain key names, torch pickle of tensors) load into our LoRA-Flow gates."""

from __future__ import annotations

import logging

import pytest
import torch

from methods.loraflow import LoraFlow, LoraFlowConfig
from methods.released_gates import ReleasedGateError
from tests.conftest import tiny_cell


def released_file(folder, layers: int, adapters: int, hidden: int, bias_shape=None) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    tensors = {}
    for layer in range(layers):
        tensors[f"encoder.layers.{layer}.lora_fusion_gate.weight"] = torch.randn(adapters, hidden, generator=generator).half()
        tensors[f"encoder.layers.{layer}.weight_bias"] = torch.randn(bias_shape or (adapters,), generator=generator)
        tensors[f"encoder.layers.{layer}.self_att.self_attention.project_q.weight"] = torch.zeros(2, 2)  # other keys pass
    folder.mkdir(exist_ok=True)
    torch.save(tensors, folder / "zh_math.pt")
    return tensors


def test_released_gates_load_by_cell_name_and_drive_the_gates(suite, tmp_path):
    hidden = suite.model.config.hidden_size
    tensors = released_file(tmp_path / "Gates", layers=2, adapters=2, hidden=hidden, bias_shape=(1, 2))
    method = LoraFlow(tiny_cell(suite), LoraFlowConfig(gates_from=str(tmp_path / "Gates")))
    method.fit()
    for layer, gate in enumerate(method.gates):
        assert torch.equal(gate.weight, tensors[f"encoder.layers.{layer}.lora_fusion_gate.weight"].float())
        assert torch.equal(gate.bias, tensors[f"encoder.layers.{layer}.weight_bias"].reshape(-1))
    assert method.history == [{"released_gates": str(tmp_path / "Gates" / "zh_math.pt")}]


@pytest.mark.parametrize(
    ("layers", "adapters", "message"),
    [(3, 2, "gates for 3 layers, the model has 2"), (2, 3, r"layer 0 has W \(3, 32\) and b of 3 values")],
)
def test_released_gates_that_do_not_fit_are_named(suite, tmp_path, layers, adapters, message):
    released_file(tmp_path, layers=layers, adapters=adapters, hidden=suite.model.config.hidden_size)
    method = LoraFlow(tiny_cell(suite), LoraFlowConfig(gates_from=str(tmp_path / "zh_math.pt")))
    with pytest.raises(ReleasedGateError, match=message):
        method.fit()


def test_missing_gate_file_names_the_expected_path(suite, tmp_path):
    with pytest.raises(ReleasedGateError, match="zh_math.pt: no released gate file"):
        LoraFlow(tiny_cell(suite), LoraFlowConfig(gates_from=str(tmp_path))).fit()


@pytest.mark.parametrize("prefix", ["encoder.layers", "model.layers"])
def test_gate_file_without_bias_loads_with_bias_zero_and_a_warning(suite, tmp_path, caplog, prefix):
    """The shape of thunlp/LoRAFlow's example `saved_model/gate.pt`: one weight per layer, no `weight_bias`."""
    hidden = suite.model.config.hidden_size
    weights = {f"{prefix}.{layer}.lora_fusion_gate.weight": torch.randn(2, hidden).half() for layer in range(2)}
    torch.save(weights, tmp_path / "gate.pt")
    method = LoraFlow(tiny_cell(suite), LoraFlowConfig(gates_from=str(tmp_path / "gate.pt")))
    with caplog.at_level(logging.WARNING, logger="methods.released_gates"):
        method.fit()
    assert f"{tmp_path / 'gate.pt'}: no 'weight_bias' tensors" in caplog.text and "using b = 0" in caplog.text
    for layer, gate in enumerate(method.gates):
        assert torch.equal(gate.weight, weights[f"{prefix}.{layer}.lora_fusion_gate.weight"].float())
        assert torch.equal(gate.bias, torch.zeros(2))


def test_gate_file_with_bias_for_only_some_layers_is_refused(suite, tmp_path):
    tensors = released_file(tmp_path, layers=2, adapters=2, hidden=suite.model.config.hidden_size)
    del tensors["encoder.layers.1.weight_bias"]
    torch.save(tensors, tmp_path / "zh_math.pt")
    method = LoraFlow(tiny_cell(suite), LoraFlowConfig(gates_from=str(tmp_path / "zh_math.pt")))
    with pytest.raises(ReleasedGateError, match=r"'encoder.layers.1.weight_bias' is missing \(1 of 2 layers"):
        method.fit()
