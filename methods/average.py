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

    @classmethod
    def check_options(cls, config: AverageConfig | None, adapters: list) -> None:
        """Refuse weights that do not give one per candidate adapter (NaN and inf are refused when parsed)."""
        weights = (config or AverageConfig()).weights
        if weights and len(weights) != len(adapters):
            raise ValueError(f"--set average.weights: got {len(weights)} weights for {len(adapters)} adapters")

    def __init__(self, cell: Cell, config: AverageConfig | None = None):
        config = config or AverageConfig()
        self.check_options(config, cell.adapters)
        count = len(cell.adapters)
        self.weights = list(config.weights or tuple(1.0 / count for _ in range(count)))
        self.model = cell.model
        set_static_weights(attach_adapters(cell.model, cell.adapters), self.weights)
