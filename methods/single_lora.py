"""Single-adapter baselines: the cell's language adapter alone, and its skill adapter alone (two table rows)."""

from methods.multi_lora import attach_adapters, set_static_weights
from methods.registry import Cell, register_method


def attach_one(cell: Cell, index: int):
    """The base model plus adapter `index` of the cell's candidates at weight 1."""
    set_static_weights(attach_adapters(cell.model, [cell.adapters[index]]), [1.0])
    return cell.model


@register_method("language_lora")
class LanguageLora:
    learns = False

    def __init__(self, cell: Cell, config: None = None):
        self.model = attach_one(cell, 0)


@register_method("skill_lora")
class SkillLora:
    learns = False

    def __init__(self, cell: Cell, config: None = None):
        self.model = attach_one(cell, 1)
