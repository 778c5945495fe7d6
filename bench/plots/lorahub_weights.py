"""Bar charts of the adapter weights LoraHub learned, one panel per cell (task x language), from saved state alone.

Reads `out/state/<suite>/lorahub/<cell>/weights.json` (written by `methods.lorahub`) and writes one figure per suite,
`out/plots/lorahub_weights_<suite>.png`: bars are the mean weight over seeds, dots the single seeds.
Run: `python -m bench.plots.lorahub_weights --out results`.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bench.report import TASK_ORDER
from methods.lorahub import RESULT_FILE
from tasks.registry import ALL_LANGUAGES

PANEL_INCHES = (3.2, 2.6)


def read_lorahub_records(out: Path) -> dict[str, list[dict]]:
    """Every saved LoraHub result under `out/state`, grouped by suite."""
    records: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(Path(out).glob(f"state/*/lorahub/*/{RESULT_FILE}")):
        records[path.parents[2].name].append(json.loads(path.read_text(encoding="utf-8")))
    return dict(records)


def _ordered(values: set[str], order: list[str] | tuple[str, ...]) -> list[str]:
    return [value for value in order if value in values] + sorted(values - set(order))


def _draw_cell(axes, records: list[dict]) -> None:
    names = records[0]["adapters"]
    weights = np.array([record["weights"] for record in records if record["adapters"] == names])
    positions = np.arange(len(names))
    axes.bar(positions, weights.mean(axis=0), color="tab:blue", alpha=0.7)
    for seed_weights in weights:
        axes.scatter(positions, seed_weights, color="black", s=10, zorder=3)
    axes.axhline(0.0, color="grey", linewidth=0.8)
    lower, upper = records[0].get("bounds", [-1.5, 1.5])
    axes.set_ylim(lower, upper)
    axes.set_xticks(positions, names, rotation=45 if len(names) > 4 else 0, ha="right" if len(names) > 4 else "center")


def plot_suite(records: list[dict], suite: str) -> Figure:
    """A task x language grid of weight bar charts for one suite."""
    tasks = _ordered({record["task"] for record in records}, TASK_ORDER)
    languages = _ordered({record["language"] for record in records}, ALL_LANGUAGES)
    figure = Figure(figsize=(PANEL_INCHES[0] * len(languages), PANEL_INCHES[1] * len(tasks)), layout="constrained")
    grid = figure.subplots(len(tasks), len(languages), squeeze=False, sharey=True)
    for row, task in enumerate(tasks):
        for column, language in enumerate(languages):
            axes = grid[row][column]
            cell = [record for record in records if (record["task"], record["language"]) == (task, language)]
            axes.set_title(f"{task} {language}" + (f" ({len(cell)} seeds)" if len(cell) > 1 else ""))
            if cell:
                _draw_cell(axes, cell)
            else:
                axes.set_axis_off()
        grid[row][0].set_ylabel("LoraHub weight")
    figure.suptitle(f"LoraHub weights per cell ({suite})")
    return figure


def plot_lorahub_weights(out: Path) -> list[Path]:
    """Write one PNG per suite with LoraHub results under `out/state`; return their paths (none if no results)."""
    paths = []
    for suite, records in read_lorahub_records(out).items():
        path = Path(out) / "plots" / f"lorahub_weights_{suite}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_suite(records, suite).savefig(path, dpi=120)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Plot the adapter weights LoraHub learned in a results folder.")
    parser.add_argument("--out", type=Path, default=Path("results"), help="the results folder of a run")
    paths = plot_lorahub_weights(parser.parse_args(argv).out)
    print("\n".join(str(path) for path in paths) if paths else "no LoraHub results found")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
