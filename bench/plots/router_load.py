"""HydraLoRA router-load plots: the mean router weight of each head, per decoder layer and projection, per cell.

Needs no model, only what a run saved: the router loads the `hydralora*` rows recorded while generating
(`out/traces/<suite>/<method>/<cell>.safetensors`, one (layers, projections, heads) tensor per test example, the mean
over that example's prompt and generated tokens) and the projection names in the cell's saved state
(`out/state/<suite>/<method>/<cell>/hydralora_config.json`). PNGs go to `out/plots/<suite>/<method>/`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from safetensors.numpy import load_file

from methods.hydralora import CONFIG_FILE

log = logging.getLogger(__name__)
TRACE_PATTERN = "*/hydralora*/*.safetensors"


def cell_router_load(trace_path: Path) -> np.ndarray | None:
    """The mean of the test examples' loads, (layers, projections, heads); None when the cell recorded none."""
    loads = list(load_file(str(trace_path)).values())
    return np.stack(loads).mean(axis=0) if loads else None


def projection_names(state_directory: Path, count: int) -> list[str]:
    """The adapted projections' names from the saved HydraLoRA config, or numbers when that state is missing."""
    config_path = state_directory / CONFIG_FILE
    if config_path.is_file():
        names = json.loads(config_path.read_text(encoding="utf-8"))["shape"]["target_modules"]
        if len(names) == count:
            return list(names)
    return [f"projection {index}" for index in range(count)]


def plot_cell_load(load: np.ndarray, names: list[str], title: str, path: Path) -> Path:
    """One heatmap per projection: rows are decoder layers, columns are heads, colour is the mean router weight."""
    layers, projections, heads = load.shape
    figure = Figure(figsize=(1.2 + 2.2 * projections + 0.3 * heads, 1.5 + 0.35 * layers), layout="constrained")
    axes = figure.subplots(1, projections, squeeze=False)[0]
    for position, axis in enumerate(axes):
        image = axis.imshow(load[:, position, :], vmin=0.0, vmax=float(load.max()), cmap="viridis", aspect="auto")
        axis.set(title=names[position], xlabel="head", xticks=range(heads), yticks=range(layers))
        axis.set_ylabel("decoder layer" if position == 0 else "")
        if layers * heads <= 160:
            for layer in range(layers):
                for head in range(heads):
                    value = load[layer, position, head]
                    colour = "k" if value > 0.6 * load.max() else "w"  # dark text on viridis' light end
                    axis.text(head, layer, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
    figure.colorbar(image, ax=list(axes), label="mean router weight")
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def plot_cells_overview(loads: dict[str, np.ndarray], title: str, path: Path) -> Path:
    """Every cell of one method in one heatmap: rows are cells, columns are (layer, projection, head) triples."""
    names = sorted(loads)
    layers, projections, heads = loads[names[0]].shape
    matrix = np.stack([loads[name].reshape(-1) for name in names])
    figure = Figure(figsize=(min(3 + 0.12 * matrix.shape[1], 24), 1.5 + 0.4 * len(names)), layout="constrained")
    axis = figure.subplots()
    image = axis.imshow(matrix, vmin=0.0, vmax=float(matrix.max()), cmap="viridis", aspect="auto")
    axis.set_yticks(range(len(names)), names)
    axis.set_xticks([layer * projections * heads for layer in range(layers)], [f"L{layer}" for layer in range(layers)])
    axis.set_xlabel(f"decoder layer, then {projections} projection(s) x {heads} heads")
    figure.colorbar(image, ax=axis, label="mean router weight")
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return path


def plot_router_load(out: Path) -> list[Path]:
    """Write router-load PNGs for every recorded HydraLoRA cell under `out`; return their paths."""
    out = Path(out)
    by_method: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    written = []
    for trace_path in sorted((out / "traces").glob(TRACE_PATTERN)):
        suite, method, cell = trace_path.parent.parent.name, trace_path.parent.name, trace_path.stem
        load = cell_router_load(trace_path)
        if load is None:
            continue
        names = projection_names(out / "state" / suite / method / cell, load.shape[1])
        target = out / "plots" / suite / method / f"router_load_{cell}.png"
        written.append(plot_cell_load(load, names, f"{method} router load, {cell}", target))
        by_method.setdefault((suite, method), {})[cell] = load
    for (suite, method), loads in sorted(by_method.items()):
        if len({load.shape for load in loads.values()}) > 1:
            log.warning("%s/%s: cells have different numbers of heads; no overview plot", suite, method)
            continue
        target = out / "plots" / suite / method / "router_load_all_cells.png"
        written.append(plot_cells_overview(loads, f"{method} router load by cell ({suite})", target))
    return written
