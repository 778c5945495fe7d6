"""`loraflow_ceiling`: LoRA-Flow's gates trained on plentiful composite data (a reference row, not a method).

The cell's two frozen adapters and LoRA-Flow's per-layer gates (methods/loraflow.py), trained on the suite's
composite training data (`cell.composite_train`, the oracle's 2000 examples) instead of the cell's ~200. It bounds
what output-level fusion of these adapters can reach: if it stays at the best single adapter, the adapters are not
complementary on this cell and no composition method can do better than choosing one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from methods.loraflow import LoraFlow, LoraFlowConfig
from methods.registry import Cell, register_method


@dataclass
class LoraFlowCeilingConfig(LoraFlowConfig):
    """LoRA-Flow's gate settings, with a budget for 2000 examples: larger batches, the same number of dev checks."""

    learning_rate: float = 2e-3
    batch_size: int = 16
    epochs: float = 4.0
    max_examples: int = 2000  # the oracle's composite data (methods/oracle.py)


@register_method("loraflow_ceiling")
class LoraFlowCeiling:
    learns = True
    Config = LoraFlowCeilingConfig

    def __init__(self, cell: Cell, config: LoraFlowCeilingConfig | None = None):
        config = config or LoraFlowCeilingConfig()
        self.cell = cell
        self.flow = LoraFlow(dataclasses.replace(cell, train=cell.composite_train[: config.max_examples]), config)
        self.model = self.flow.model

    @property
    def history(self) -> list[dict]:
        return self.flow.history

    @property
    def trainable_parameter_count(self) -> int:
        return self.flow.trainable_parameter_count

    def fit(self) -> None:
        if not self.cell.composite_train:
            raise ValueError(
                f"loraflow_ceiling: the suite has no composite training data for {self.cell.task}/{self.cell.language}"
            )
        self.flow.fit()

    def save(self, directory: Path) -> None:
        self.flow.save(directory)

    def load(self, directory: Path) -> None:
        self.flow.load(directory)

    def record_weights(self, inputs: dict):
        return self.flow.record_weights(inputs)

    def recorded_weights(self, example_ids: list[str]):
        return self.flow.recorded_weights(example_ids)
