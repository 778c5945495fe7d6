"""`average`: static fusion, `h' = h + sum_i w_i delta_h_i` with fixed weights (equal unless given)."""

from dataclasses import dataclass

from methods.multi_lora import attach_adapters, set_static_weights
from methods.registry import Cell, register_method


@dataclass
class AverageConfig:
    weights: tuple[float, ...] = ()  # one per candidate adapter; empty means 1/k each (the mean of their outputs)


@register_method("average")
class Average:
    learns = False
    Config = AverageConfig

    def __init__(self, cell: Cell, config: AverageConfig | None = None):
        config = config or AverageConfig()
        count = len(cell.adapters)
        weights = config.weights or tuple(1.0 / count for _ in range(count))
        if len(weights) != count:
            raise ValueError(f"--set average.weights: got {len(weights)} weights for {count} adapters")
        self.weights = list(weights)
        self.model = cell.model
        set_static_weights(attach_adapters(cell.model, cell.adapters), self.weights)
