"""Plots of per-token fusion weights (LoRA-Flow's gates, X-LoRA's scalings), read from the traces the grid saved (no
model needed).

For each trace `out/traces/<suite>/<loraflow|xlora>/<cell>.safetensors` (layout: methods/fusion_gate.py
`trace_tensors`) this writes under `out/plots/<suite>/<method>/`:
- `<cell>--<example>.png`: a heatmap per adapter (layers x generated tokens, the tokens on the axis) and each
  adapter's mean weight per layer over the answer;
- `<cell>--prompt-vs-answer.png`: each adapter's mean weight per layer over the prompt tokens and over the answer
  tokens, pooled over the cell's examples, with the overall means as bars;
- `<cell>--token-kinds.png`: each adapter's mean weight (over layers) by the kind of token the step produces (words in
  a non-ASCII script, ASCII words, digits and operators, space and punctuation), in the prompt and in the answer.
Run as `python -m bench.plots.fusion_weights --out results`.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib import font_manager  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from methods.fusion_gate import ExampleTrace, read_trace_tensors, unpack_strings  # noqa: E402

log = logging.getLogger(__name__)
METHODS = ("loraflow", "loraflow_ceiling", "xlora")  # the methods that record per-token weights (X-LoRA: its classifier's scalings)
LATIN_FAMILY = "DejaVu Sans"  # matplotlib's own font: Latin and Cyrillic
CJK_FAMILIES = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Source Han Sans SC", "WenQuanYi Micro Hei",
                "WenQuanYi Zen Hei", "Droid Sans Fallback", "AR PL UMing CN")  # fmt: skip
MPLFONTS_CJK_FILE = "fonts/NotoSansCJKsc-Regular.otf"  # shipped by the `mplfonts` wheel (SIL OFL)


def label_font_families() -> list[str]:
    """DejaVu Sans, then the first CJK font found (installed system-wide, or the pip package `mplfonts`).

    matplotlib falls back glyph by glyph along this list, so Latin, Cyrillic and CJK labels all render. Without a
    CJK font a warning is logged and CJK tokens show as empty boxes.
    """
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    for family in CJK_FAMILIES:
        if family in installed:
            return [LATIN_FAMILY, family]
    spec = importlib.util.find_spec("mplfonts")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / MPLFONTS_CJK_FILE
        if path.is_file():
            font_manager.fontManager.addfont(str(path))
            return [LATIN_FAMILY, font_manager.FontProperties(fname=str(path)).get_name()]
    log.warning(
        "no CJK font found (tried %s and the pip package 'mplfonts'); Chinese tokens will show as boxes. "
        "Install one with `pip install mplfonts` or `apt-get install fonts-noto-cjk`.",
        ", ".join(CJK_FAMILIES),
    )
    return [LATIN_FAMILY]


def display_token(text: str) -> str:
    """A token's text as an axis label: visible spaces and newlines, other control characters escaped."""
    text = text.replace("\n", "⏎").replace(" ", "␣")
    return "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in text) or "·"


def answer_columns(trace: ExampleTrace, texts: list[str], max_tokens: int) -> tuple[torch.Tensor, list[str]]:
    """The weights of each generation step, labelled by the token it produced: (layers, steps, k) and labels.

    The weights read at position t produced token t + 1, so the answer's steps are positions prompt_length-1 .. T-2.
    """
    start = trace.prompt_length - 1
    stop = min(trace.token_ids.shape[0] - 1, start + max_tokens)
    return trace.weights[:, start:stop], [display_token(text) for text in texts[start + 1 : stop + 1]]


def prompt_answer_means(traces: list[ExampleTrace]) -> tuple[torch.Tensor, torch.Tensor]:
    """Each layer's mean weight per adapter, (layers, k), over the prompt's steps and over the answer's steps."""
    prompt = torch.cat([trace.weights[:, : trace.prompt_length - 1] for trace in traces], dim=1)
    answer = torch.cat([trace.weights[:, trace.prompt_length - 1 : -1] for trace in traces], dim=1)
    return prompt.mean(dim=1), answer.mean(dim=1)


TOKEN_KINDS = ("non-ASCII words", "ASCII words", "digits and operators", "space and punctuation")
OPERATOR_CHARACTERS = set("+-*/=<>%#")


def token_kind(text: str) -> str:
    """Which of `TOKEN_KINDS` a token's text is: prose in zh/ru (or accented es), English or code words, arithmetic.

    A digit makes a token arithmetic; a byte-level token holding part of a multi-byte character (decoded as U+FFFD)
    counts as non-ASCII.
    """
    if any(char.isdigit() for char in text):
        return "digits and operators"
    if any(ord(char) > 127 and (char.isalpha() or char == "\ufffd") for char in text):
        return "non-ASCII words"
    if any(char.isalpha() for char in text):
        return "ASCII words"
    if any(char in OPERATOR_CHARACTERS for char in text):
        return "digits and operators"
    return "space and punctuation"


def token_kind_means(traces: list[tuple[ExampleTrace, list[str]]]) -> dict[tuple[str, str], tuple[torch.Tensor, int]]:
    """(part, kind) -> (each adapter's mean weight over layers and steps, steps); part is "prompt" or "answer".

    A step is labelled by the token it produces (the weights at t produced token t + 1), as in the heatmaps.
    """
    steps: dict[tuple[str, str], list[torch.Tensor]] = {}
    for trace, texts in traces:
        for position in range(trace.token_ids.shape[0] - 1):
            part = "prompt" if position + 1 < trace.prompt_length else "answer"
            steps.setdefault((part, token_kind(texts[position + 1])), []).append(trace.weights[:, position].mean(dim=0))
    return {key: (torch.stack(rows).mean(dim=0), len(rows)) for key, rows in steps.items()}


def safe_name(text: str) -> str:
    return re.sub(r"[^\w.-]+", "_", text)


def plot_example(path: Path, title: str, adapters: list[str], weights: torch.Tensor, labels: list[str], fonts) -> Path:
    """One heatmap per adapter (layers x steps, produced tokens on the x axis) and the mean weight per layer."""
    layers, steps, _ = weights.shape
    size = (max(6.0, 0.22 * steps + 2), 2.2 * (len(adapters) + 1) + 1)
    figure, axes = plt.subplots(len(adapters) + 1, 1, figsize=size)
    for index, (axis, name) in enumerate(zip(axes, adapters)):
        image = axis.imshow(weights[:, :, index].numpy(), aspect="auto", origin="lower", cmap="viridis")
        figure.colorbar(image, ax=axis, pad=0.01)
        axis.set_title(f"weight of adapter '{name}'", fontsize=9)
        axis.set_ylabel("layer")
        axis.set_xticks(range(steps), labels, rotation=90, fontsize=7, fontfamily=fonts)
    means = axes[-1]
    for index, name in enumerate(adapters):
        means.plot(range(layers), weights[:, :, index].mean(dim=1).numpy(), marker="o", label=name)
    means.set_xlabel("layer")
    means.set_ylabel("mean weight over the answer")
    means.legend(fontsize=8)
    figure.suptitle(title, fontsize=10, fontfamily=fonts)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_prompt_vs_answer(path: Path, title: str, adapters: list[str], traces: list[ExampleTrace]) -> Path:
    """Each adapter's mean weight per layer over prompt tokens (dashed) and answer tokens (solid), and overall."""
    prompt, answer = prompt_answer_means(traces)
    figure, (by_layer, overall) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    for index, name in enumerate(adapters):
        line = by_layer.plot(answer[:, index].numpy(), marker="o", label=f"{name}: answer")[0]
        color, label = line.get_color(), f"{name}: prompt"
        by_layer.plot(prompt[:, index].numpy(), marker="x", linestyle="--", color=color, label=label)
    by_layer.set_xlabel("layer")
    by_layer.set_ylabel("mean weight")
    by_layer.legend(fontsize=8)
    positions = torch.arange(len(adapters), dtype=torch.float32)
    overall.bar((positions - 0.2).numpy(), prompt.mean(dim=0).numpy(), width=0.4, label="prompt")
    overall.bar((positions + 0.2).numpy(), answer.mean(dim=0).numpy(), width=0.4, label="answer")
    overall.set_xticks(positions.numpy(), adapters)
    overall.set_title("mean over layers", fontsize=9)
    overall.legend(fontsize=8)
    figure.suptitle(f"{title}: mean over {len(traces)} examples", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_token_kinds(path: Path, title: str, adapters: list[str], traces: list[tuple[ExampleTrace, list[str]]]) -> Path:
    """Bars: each adapter's mean weight by the kind of token produced, one panel for the prompt, one for the answer."""
    means = token_kind_means(traces)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    width = 0.8 / len(adapters)
    for axis, part in zip(axes, ("prompt", "answer")):
        kinds = [kind for kind in TOKEN_KINDS if (part, kind) in means]
        for index, name in enumerate(adapters):
            heights = [float(means[part, kind][0][index]) for kind in kinds]
            axis.bar([position + (index - (len(adapters) - 1) / 2) * width for position in range(len(kinds))],
                     heights, width=width, label=name)  # fmt: skip
        axis.set_xticks(range(len(kinds)), [f"{kind}\n({means[part, kind][1]} steps)" for kind in kinds], fontsize=8)
        axis.set_title(f"{part} tokens", fontsize=9)
    axes[0].set_ylabel("mean weight over layers")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"{title}: weight by kind of token produced, {len(traces)} examples", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_trace_file(trace_path: Path, plot_directory: Path, examples: int, max_tokens: int, fonts) -> list[Path]:
    """The per-example plots of the first `examples` examples with an answer, then the cell's prompt-vs-answer and
    token-kind plots."""
    tensors = load_file(str(trace_path))
    if "adapters.utf8" not in tensors:
        raise ValueError(f"{trace_path}: no 'adapters.utf8' entry; not a fusion-weight trace file")
    adapters = unpack_strings(tensors["adapters.utf8"], tensors["adapters.offsets"])
    traces = {key: (trace, texts) for key, (trace, texts) in read_trace_tensors(tensors).items()
              if trace.token_ids.shape[0] > trace.prompt_length}  # fmt: skip
    if not traces:
        log.warning("%s: no example with a generated answer; nothing to plot", trace_path)
        return []
    plot_directory.mkdir(parents=True, exist_ok=True)
    cell = trace_path.stem
    paths = []
    for example_id, (trace, texts) in list(traces.items())[:examples]:
        weights, labels = answer_columns(trace, texts, max_tokens)
        path = plot_directory / f"{cell}--{safe_name(example_id)}.png"
        paths.append(plot_example(path, f"{cell}, example {example_id}", adapters, weights, labels, fonts))
    path = plot_directory / f"{cell}--prompt-vs-answer.png"
    paths.append(plot_prompt_vs_answer(path, cell, adapters, [trace for trace, _ in traces.values()]))
    paths.append(plot_token_kinds(plot_directory / f"{cell}--token-kinds.png", cell, adapters, list(traces.values())))
    return paths


def plot_fusion_weights(out: Path, examples: int = 1, max_tokens: int = 96) -> list[Path]:
    """Plot every trace under `out/traces/*/<loraflow|xlora>/`; return the PNG paths written under `out/plots/`."""
    out = Path(out)
    trace_paths = sorted(path for method in METHODS for path in (out / "traces").glob(f"*/{method}/*.safetensors"))
    if not trace_paths:
        log.warning("no %s traces under %s", " or ".join(METHODS), out / "traces")
        return []
    fonts = label_font_families()
    paths = []
    for trace_path in trace_paths:
        method, suite = trace_path.parent.name, trace_path.parent.parent.name
        paths += plot_trace_file(trace_path, out / "plots" / suite / method, examples, max_tokens, fonts)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plot LoRA-Flow fusion weights saved by the grid.")
    parser.add_argument("--out", type=Path, default=Path("results"), help="the grid's output folder")
    parser.add_argument("--examples", type=int, default=1, help="examples plotted per cell")
    parser.add_argument("--max-tokens", type=int, default=96, help="answer tokens shown per heatmap")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for path in plot_fusion_weights(arguments.out, arguments.examples, arguments.max_tokens):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
