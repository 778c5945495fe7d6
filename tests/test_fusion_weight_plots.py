"""Fusion-weight plots: traces the grid saves plot without a model; token kinds label each generation step."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from bench.grid import GridSpec, cell_path, run_grid
from bench.plots.fusion_weights import plot_fusion_weights, prompt_answer_means, token_kind, token_kind_means
from bench.suites import SuiteOptions
from methods.fusion_gate import ExampleTrace, read_trace_tensors


def test_grid_saves_traces_that_plot_without_a_model(tiny_suite, tmp_path):
    out = tmp_path / "results"
    spec = GridSpec(
        suite=str(tiny_suite), methods=["loraflow"], tasks=["math"], languages=["zh"], seeds=[0], out=out,
        method_options={"loraflow": {"epochs": "1"}}, suite_options=SuiteOptions(device="cpu"),
    )  # fmt: skip
    run_grid(spec)
    record = json.loads(cell_path(out, tiny_suite.name, "loraflow", "math", "zh", 0).read_text())
    assert record["trainable_parameters"] == 2 * (2 * 32 + 2) and record["fit_history"]
    trace_file = out / "traces" / tiny_suite.name / "loraflow" / "math-zh-seed0.safetensors"
    traces = read_trace_tensors(load_file(str(trace_file)))
    assert len(traces) == record["n"]
    trace, texts = traces["zh-test-0"]
    assert trace.weights.shape[0] == 2 and trace.weights.shape[2] == 2 and len(texts) == trace.token_ids.shape[0]
    assert "".join(texts[: trace.prompt_length]).startswith("<s>Question: 0 + 1")
    prompt, answer = prompt_answer_means([trace for trace, _ in traces.values()])
    assert prompt.shape == answer.shape == (2, 2)
    paths = plot_fusion_weights(out)
    assert len(paths) == 3 and all(path.is_file() and path.suffix == ".png" for path in paths)
    assert paths[-1].name == "math-zh-seed0--token-kinds.png"
    assert all(path.parent == out / "plots" / tiny_suite.name / "loraflow" for path in paths)


@pytest.mark.parametrize(
    "text, kind",
    [("苹果", "non-ASCII words"), ("\ufffd", "non-ASCII words"), ("␣яблок", "non-ASCII words"),
     ("ñ", "non-ASCII words"), (" return", "ASCII words"), ("xs", "ASCII words"), (" 12", "digits and operators"),
     ("x1", "digits and operators"), (" +", "digits and operators"), ("####", "digits and operators"),
     (" ", "space and punctuation"),
     (".\n", "space and punctuation"), ("(", "space and punctuation")],
)  # fmt: skip
def test_token_kind_sorts_prose_words_and_arithmetic(text, kind):
    assert token_kind(text) == kind


def test_token_kind_means_label_each_step_by_the_token_it_produces():
    weights = torch.arange(2 * 5 * 2, dtype=torch.float32).reshape(2, 5, 2)  # (layers, T, k)
    trace = ExampleTrace(token_ids=torch.arange(5), weights=weights, prompt_length=2)
    means = token_kind_means([(trace, ["<s>", "苹果", " 3", " +", " 4"])])
    # step 0 produces the prompt's "苹果"; steps 1-3 produce the answer's " 3", " +", " 4" (all arithmetic)
    assert set(means) == {("prompt", "non-ASCII words"), ("answer", "digits and operators")}
    prompt, prompt_steps = means["prompt", "non-ASCII words"]
    answer, answer_steps = means["answer", "digits and operators"]
    assert prompt_steps == 1 and answer_steps == 3
    torch.testing.assert_close(prompt, weights[:, 0].mean(dim=0))
    torch.testing.assert_close(answer, weights[:, 1:4].mean(dim=(0, 1)))
