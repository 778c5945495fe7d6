"""`base`: the base model with no adapter (the lower bound of every table)."""

from methods.registry import Cell, register_method


@register_method("base")
class BaseModel:
    learns = False

    def __init__(self, cell: Cell, config: None = None):
        self.model = cell.model
