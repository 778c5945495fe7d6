"""Every plot of a run, drawn from its saved files alone (no model): gate heatmaps, LoraHub bars, router loads."""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed

from bench.plots.fusion_weights import plot_fusion_weights  # noqa: E402
from bench.plots.lorahub_weights import plot_lorahub_weights  # noqa: E402
from bench.plots.router_load import plot_router_load  # noqa: E402

log = logging.getLogger(__name__)
PLOTTERS = (plot_fusion_weights, plot_lorahub_weights, plot_router_load)


def draw_all_figures(out: Path) -> list[Path]:
    """Run every plotter over `out`; a plotter with nothing to draw returns no paths."""
    paths: list[Path] = []
    for plotter in PLOTTERS:
        paths += plotter(Path(out))
    return paths
