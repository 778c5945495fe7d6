"""The held-out-kinds split of the built-in suites: the cells' train and dev splits share no problem kind (math) or
function family (code) with their test split, while the zoo's skill data and the oracle's data hold every kind."""

from __future__ import annotations

import dataclasses

import pytest

from bench.builtin_suite import SKILL_DATA, SMOLLM2_SETTINGS, BuiltinSettings, adapter_datasets, cell_data
from tasks.builtin.code_families import FAMILIES
from tasks.builtin.math_problems import KIND_WEIGHTS
from tasks.builtin.pools import in_kind_split
from tasks.registry import COMPOSITE_LANGUAGES

ALL_KINDS = {"math": set(KIND_WEIGHTS), "code": {family.id for family in FAMILIES}}


def kinds_of(examples) -> set[str]:
    """The problem kinds of built-in examples, read from their ids (`<task>-<lang>-<pool>-<kind>-<digest>`)."""
    return {example.id.split("-")[3] for example in examples}


def test_the_kind_split_is_a_partition_with_a_third_held_out():
    for task, kinds in ALL_KINDS.items():
        held_out = {kind for kind in kinds if in_kind_split(task, kind, "held_out")}
        seen = {kind for kind in kinds if in_kind_split(task, kind, "seen")}
        assert held_out.isdisjoint(seen) and held_out | seen == kinds
        assert 0.2 < len(held_out) / len(kinds) < 0.5


@pytest.mark.parametrize("skill", sorted(SKILL_DATA))
@pytest.mark.parametrize("language", COMPOSITE_LANGUAGES)
def test_no_test_kind_is_in_a_cells_train_or_dev_split(skill, language):
    settings = dataclasses.replace(SMOLLM2_SETTINGS, cell_split="held_out_kinds")
    cell = cell_data(settings, skill, language)
    test_kinds = kinds_of(cell.test)
    assert len(cell.test) == settings.cell_sizes[f"test_{skill}"] and len(cell.train) == settings.cell_sizes["train"]
    assert test_kinds.isdisjoint(kinds_of(cell.train)) and test_kinds.isdisjoint(kinds_of(cell.dev))
    assert all(in_kind_split(skill, kind, "held_out") for kind in test_kinds)
    assert kinds_of(cell.composite_train) == ALL_KINDS[skill]  # the oracle learns every kind


def test_the_zoo_and_the_default_split_keep_every_kind():
    settings = BuiltinSettings(cell_split="held_out_kinds")
    assert settings.key() == BuiltinSettings().key()  # one cache entry, one zoo, for both splits
    skill_data = {entry.skill: examples for entry, examples in adapter_datasets(settings).items() if entry.skill}
    for skill, kinds in ALL_KINDS.items():
        assert kinds_of(skill_data[skill]) == kinds
        random_cell = cell_data(BuiltinSettings(), skill, "zh")
        assert kinds_of(random_cell.test) & kinds_of(random_cell.train)  # the random split mixes them


def test_an_unknown_cell_split_is_refused():
    with pytest.raises(ValueError, match="cell_split"):
        BuiltinSettings(cell_split="by_kind")
