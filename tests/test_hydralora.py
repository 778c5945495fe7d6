"""HydraLoRA: the layer against PEFT's LoRA and a slow per-head loop, training, state, N selection, the grid rows."""

from __future__ import annotations

import copy
import functools
import json

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.numpy import load_file

from bench.cli import main
from bench.generation import generate_completions
from bench.grid import cell_path
from bench.plots.router_load import plot_router_load
from methods.hydra_layer import HydraLoraLinear, HydraShape, attach_hydra_layers, router_weights
from methods.hydralora import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    HydraLora,
    HydraLoraConfig,
    HydraLoraTuned,
    choose_head_count,
)
from methods.registry import Cell
from tasks.examples import Example

MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
FAST = {"train_data": "cell", "heads": 3, "epochs": 2.0, "learning_rate": 1e-2,
        "router_epochs": 2.0, "router_learning_rate": 1e-1}  # fmt: skip


def reference_hydra_output(layer: HydraLoraLinear, x: torch.Tensor) -> torch.Tensor:
    """Slow reference, as HydraLoRA/peft/tuners/lora.py writes it: one head at a time in a Python loop."""
    weights = torch.softmax(x @ layer.router.T, dim=-1)
    output = layer.base(x)
    for head in range(layer.lora_B.shape[0]):
        output = output + weights[..., head : head + 1] * (x @ layer.lora_A.T @ layer.lora_B[head].T) * layer.scaling
    return output


def randomise_heads(layers, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in (layer for row in layers for layer in row):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=generator) * 0.3)
            layer.router.copy_(torch.randn(layer.router.shape, generator=generator))


def examples(prefix: str, count: int) -> list[Example]:
    return [Example(id=f"{prefix}-{i}", prompt=f"Question: {i} + 1 = ?\nAnswer:", target=f" {i + 1}") for i in range(count)]


def make_cell(model, tokenizer, shared_directory=None, zoo_data=()) -> Cell:
    return Cell(model=model, tokenizer=tokenizer, adapters=[], train=examples("train", 8), dev=examples("dev", 4), seed=0,
                zoo_training_data=list(zoo_data), shared_directory=shared_directory)  # fmt: skip


def hydra_parameters(model) -> dict[str, torch.Tensor]:
    parts = ("lora_A", "lora_B", "router")
    return {name: p.detach().clone() for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] in parts}


def test_one_head_equals_peft_lora_with_the_same_A_and_B(tiny_model):
    hydra = copy.deepcopy(tiny_model)
    layers = attach_hydra_layers(hydra, HydraShape(4, 32.0, 0.05, 1, MLP_TARGETS), seed=0)
    randomise_heads(layers)
    peft_config = LoraConfig(r=4, lora_alpha=32, lora_dropout=0.05, target_modules=list(MLP_TARGETS))
    peft_model = get_peft_model(copy.deepcopy(tiny_model), peft_config)
    with torch.no_grad():
        for name, module in hydra.named_modules():
            if isinstance(module, HydraLoraLinear):
                peft_layer = peft_model.base_model.model.get_submodule(name)
                peft_layer.lora_A["default"].weight.copy_(module.lora_A)
                peft_layer.lora_B["default"].weight.copy_(module.lora_B[0])
    input_ids = torch.randint(3, 200, (2, 7))
    with torch.no_grad():
        expected = peft_model.eval()(input_ids=input_ids).logits
        torch.testing.assert_close(hydra.eval()(input_ids=input_ids).logits, expected, rtol=1e-5, atol=1e-5)


def test_fused_heads_equal_the_per_head_loop(tiny_model):
    layers = attach_hydra_layers(tiny_model, HydraShape(3, 8.0, 0.0, 4, MLP_TARGETS), seed=1)
    randomise_heads(layers, seed=1)
    for layer in layers[1]:
        x = torch.randn(2, 5, layer.base.in_features)
        torch.testing.assert_close(layer(x), reference_hydra_output(layer, x), rtol=1e-5, atol=1e-6)


def test_router_weights_are_per_token_and_sum_to_one(tiny_model):
    (layer, *_), *_ = attach_hydra_layers(tiny_model, HydraShape(4, 32.0, 0.0, 5, MLP_TARGETS), seed=2)
    x = torch.randn(3, 6, layer.base.in_features)
    weights = router_weights(x, layer.router)
    assert weights.shape == (3, 6, 5) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6))
    assert not torch.allclose(weights[0, 0], weights[0, 1])  # each token gets its own mixture


def test_fit_trains_only_hydra_parameters(tiny_model, tiny_tokenizer):
    base_before = {name: p.clone() for name, p in tiny_model.named_parameters()}
    method = HydraLora(make_cell(tiny_model, tiny_tokenizer), HydraLoraConfig(**FAST))
    method.fit()
    trainable = {name for name, p in method.model.named_parameters() if p.requires_grad}
    assert trainable and all(name.rsplit(".", 1)[-1] in ("lora_A", "lora_B", "router") for name in trainable)
    for name, parameter in method.model.named_parameters():
        if name not in trainable:
            original = name.replace(".base.", ".")
            torch.testing.assert_close(parameter, base_before[original], rtol=0, atol=0)
    assert all(layer.lora_B.abs().sum() > 0 for row in method.fitted.layers for layer in row)  # B heads left zero init
    shape = method.fitted.shape
    per_layer = sum((shape.rank + shape.heads) * m.base.in_features + shape.heads * m.base.out_features * shape.rank
                    for m in method.fitted.layers[0])  # fmt: skip
    assert method.trainable_parameter_count == per_layer * len(method.fitted.layers)
    assert method.history and method.history[-1]["stage"] == "shared"


def test_save_and_load_round_trip(tiny_model, tiny_tokenizer, tmp_path):
    fresh = copy.deepcopy(tiny_model)
    method = HydraLora(make_cell(tiny_model, tiny_tokenizer), HydraLoraConfig(**FAST))
    method.fit()
    method.save(tmp_path / "state")
    assert (tmp_path / "state" / WEIGHTS_FILE).is_file()
    assert json.loads((tmp_path / "state" / CONFIG_FILE).read_text())["shape"]["heads"] == 3
    loaded = HydraLora(make_cell(fresh, tiny_tokenizer), HydraLoraConfig(**FAST))
    loaded.load(tmp_path / "state")
    input_ids = torch.randint(3, 200, (2, 9))
    with torch.no_grad():
        expected = method.model(input_ids=input_ids).logits
        torch.testing.assert_close(loaded.model(input_ids=input_ids).logits, expected, rtol=0, atol=0)
    assert loaded.history == method.history and loaded.trainable_parameter_count == method.trainable_parameter_count


def test_router_tuning_reuses_the_shared_model_and_changes_only_routers(tiny_model, tiny_tokenizer, tmp_path):
    shared = tmp_path / "shared"
    first = HydraLora(make_cell(copy.deepcopy(tiny_model), tiny_tokenizer, shared), HydraLoraConfig(**FAST))
    first.fit()
    trained = hydra_parameters(first.model)
    tuned = HydraLoraTuned(make_cell(copy.deepcopy(tiny_model), tiny_tokenizer, shared), HydraLoraConfig(**FAST))
    tuned.fit()
    assert len(list(shared.iterdir())) == 1  # trained once, in one folder; no scratch folder left behind
    after = hydra_parameters(tuned.model)
    assert set(after) == set(trained)
    for name, value in after.items():
        if name.endswith("router"):
            assert not torch.equal(value, trained[name]), name
        else:
            torch.testing.assert_close(value, trained[name], rtol=0, atol=0)
    routers = sum(p.numel() for name, p in tuned.model.named_parameters() if name.endswith("router"))
    assert tuned.trainable_parameter_count == routers
    assert [entry["stage"] for entry in tuned.history][-1] == "routers"


@pytest.mark.parametrize("clusters", [3, 5])
def test_silhouette_picks_the_number_of_well_separated_clusters(clusters):
    generator = np.random.default_rng(0)
    centres = generator.normal(0, 20, size=(clusters, 8))
    features = np.concatenate([centre + generator.normal(0, 0.5, size=(40, 8)) for centre in centres])
    chosen, scores = choose_head_count(features, (2, 3, 4, 5, 6, 7, 8), seed=0)
    assert chosen == clusters and set(scores) == {2, 3, 4, 5, 6, 7, 8}


def test_heads_chosen_by_clustering_the_training_data(tiny_model, tiny_tokenizer):
    zoo = examples("zoo", 30)
    options = {"train_data": "zoo", "heads": None, "head_candidates": (2, 3), "max_train_examples": 8}
    config = HydraLoraConfig(**{**FAST, **options})
    method = HydraLora(make_cell(tiny_model, tiny_tokenizer, zoo_data=zoo), config)
    method.fit()
    assert method.fitted.shape.heads in (2, 3) and set(method.fitted.head_scores) == {2, 3}


def test_without_zoo_training_data_it_trains_on_the_cell_and_says_so(tiny_model, tiny_tokenizer, caplog):
    with caplog.at_level("WARNING", logger="methods.hydralora"):
        method = HydraLora(make_cell(tiny_model, tiny_tokenizer), HydraLoraConfig())
    assert method.config.train_data == "cell"
    assert "does not supply the data its zoo's adapters were trained on" in caplog.text
    with pytest.raises(ValueError, match="hydralora.train_data=nope"):
        HydraLora(make_cell(tiny_model, tiny_tokenizer), HydraLoraConfig(train_data="nope"))


def write_zoo_data_fields(suite_folder) -> int:
    """Give every zoo.json entry a `data` file (text lines for languages, Example lines for the skill); the line count."""
    manifest = suite_folder / "zoo" / "zoo.json"
    zoo = json.loads(manifest.read_text())
    lines = 0
    for entry in zoo["adapters"]:
        if entry["role"] == "language":
            records = [{"text": f"{entry['language']} text number {i}"} for i in range(6)]
        else:
            records = [{"id": f"m{i}", "prompt": f"Question: {i} + 2 = ?\nAnswer:", "target": f" {i + 2}"} for i in range(6)]
        (suite_folder / "zoo" / f"{entry['name']}_train.jsonl").write_text("\n".join(map(json.dumps, records)) + "\n")
        entry["data"] = f"{entry['name']}_train.jsonl"
        lines += len(records)
    manifest.write_text(json.dumps(zoo))
    return lines


@pytest.mark.parametrize("with_data", [True, False])
def test_default_runs_on_a_suite_json_suite_with_and_without_zoo_data(tiny_suite, tmp_path, with_data):
    import shutil

    from bench.suites import SuiteOptions, load_suite

    suite_folder = shutil.copytree(tiny_suite, tmp_path / "suite")
    lines = write_zoo_data_fields(suite_folder) if with_data else 0
    assert len(load_suite(str(suite_folder), SuiteOptions(device="cpu")).zoo_training_data) == lines
    out = tmp_path / "results"
    fast = {key: value for key, value in FAST.items() if key != "train_data"}  # the default, train_data=zoo
    options = [item for key, value in fast.items() for item in ("--set", f"hydralora.{key}={value}")]
    arguments = ["--suite", str(suite_folder), "--methods", "hydralora", "--tasks", "math", "--langs", "zh,es",
                 "--out", str(out), "--device", "cpu", "--limit", "2"] + options  # fmt: skip
    assert main(arguments) == 0
    shared_models = list((out / "state" / suite_folder.name / "hydralora" / "shared").iterdir())
    assert len(shared_models) == (1 if with_data else 2)  # one model on the zoo's data, else one per cell's train split


def test_recorded_router_load_is_the_mean_over_real_tokens(tiny_model, tiny_tokenizer):
    method = HydraLora(make_cell(tiny_model, tiny_tokenizer), HydraLoraConfig(**FAST))
    method.fit()
    randomise_heads(method.fitted.layers, seed=3)
    prompts = ["Question: 12 + 1 = ?\nAnswer:", "Q"]
    generate_completions(method.model, tiny_tokenizer, prompts, 5, batch_size=2, batch_context=method.record_weights)
    loads = method.recorded_weights(["long", "short"])
    for prompt, key in zip(prompts, ("long", "short")):
        prompt_ids = tiny_tokenizer(prompt, return_tensors="pt")["input_ids"]
        pad = tiny_tokenizer.pad_token_id
        output = method.model.generate(prompt_ids, max_new_tokens=5, do_sample=False, pad_token_id=pad)
        fed = output[:, :-1]  # the last new token is never fed back
        fed = fed[:, : int((fed[0] != pad).sum())]  # what a row is fed after it finished is padding
        expected = torch.zeros_like(loads[key])

        def keep_mean_load(module, args, output, position):
            expected[position] = router_weights(args[0], module.router)[0].mean(0)

        hooks = [layer.register_forward_hook(functools.partial(keep_mean_load, position=(i, p)))
                 for i, row in enumerate(method.fitted.layers) for p, layer in enumerate(row)]  # fmt: skip
        with torch.no_grad():
            method.model(input_ids=fed)
        for hook in hooks:
            hook.remove()
        torch.testing.assert_close(loads[key], expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(loads[key].sum(-1), torch.ones(loads[key].shape[:2]))


def test_grid_rows_share_one_model_and_plot_router_load(tiny_suite, tmp_path):
    out = tmp_path / "results"
    options = [f"{method}.{key}={value}" for method in ("hydralora", "hydralora_tuned") for key, value in FAST.items()]
    arguments = ["--suite", str(tiny_suite), "--methods", "hydralora,hydralora_tuned", "--tasks", "math", "--langs", "zh",
                 "--out", str(out), "--device", "cpu", "--limit", "3"] + [item for o in options for item in ("--set", o)]  # fmt: skip
    assert main(arguments) == 0
    suite = tiny_suite.name
    records = {m: json.loads(cell_path(out, suite, m, "math", "zh", 0).read_text()) for m in ("hydralora", "hydralora_tuned")}
    assert 0 < records["hydralora_tuned"]["trainable_parameters"] < records["hydralora"]["trainable_parameters"]
    assert len(list((out / "state" / suite / "hydralora" / "shared").iterdir())) == 1  # trained once for both rows
    assert not (out / "state" / suite / "hydralora_tuned" / "shared").exists()
    trace = load_file(str(out / "traces" / suite / "hydralora" / "math-zh-seed0.safetensors"))
    assert len(trace) == 3 and all(value.shape == (2, 3, 3) for value in trace.values())
    plots = plot_router_load(out)
    assert len(plots) == 2 + 2 and all(path.is_file() and path.stat().st_size > 0 for path in plots)
    assert main(arguments) == 0  # a rerun finds every cell finished
