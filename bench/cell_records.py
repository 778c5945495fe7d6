"""What the grid keeps of each cell: its finished file (the identity it was computed for, why it no longer fits a
run, keeping it beside its replacement), or why it could not be computed."""

from __future__ import annotations

import itertools
import json
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path

from bench.cell_identity import changed_inputs
from methods.training import TrainingDiverged

log = logging.getLogger(__name__)
# What methods raise when an option, the suite or the cell's data does not let them run (hydralora without the zoo's
# data, oracle without composite data, a diverged fit); any other exception in a cell is a bug.
REFUSALS = (ValueError, TrainingDiverged)


def cell_name(task: str, language: str, seed: int) -> str:
    return f"{task}-{language}-seed{seed}"


@dataclass
class CellFailure:
    """A cell the grid could not compute: refused by its method, or failed with an unexpected error (a bug, whose
    traceback is kept for `--debug`)."""

    method: str
    task: str
    language: str
    seed: int
    message: str
    unexpected: bool = False
    traceback: str = ""

    def describe(self) -> str:
        what = f"failed with an unexpected {self.message}" if self.unexpected else f"refused: {self.message}"
        return f"{self.method} on {cell_name(self.task, self.language, self.seed)} {what}"


def cell_failure(error: Exception, method: str, task: str, language: str, seed: int) -> CellFailure:
    """The record of a cell that raised `error` (called inside its `except`, so the traceback is the cell's)."""
    if isinstance(error, REFUSALS):
        return CellFailure(method, task, language, seed, str(error))
    return CellFailure(method, task, language, seed, f"{type(error).__name__}: {error}", unexpected=True,
                       traceback=traceback.format_exc())  # fmt: skip


def finished_identity_key(path: Path) -> str | None:
    """The identity key a finished cell file records (None: no such file; '' : unreadable or recorded without one)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return ""
    return record.get("identity_key", "") if isinstance(record, dict) else ""


def stale_reason(path: Path, identity: dict) -> str:
    """Why the finished cell at `path` is not a result for `identity`: the inputs that changed."""
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("identity")
    except (json.JSONDecodeError, OSError, UnicodeDecodeError, AttributeError):
        return "its file is unreadable"
    return ", ".join(changed_inputs(old, identity)) + " changed"


def set_aside(path: Path) -> Path:
    """Keep a replaced cell file beside the new one as `<cell>.json.replaced-<n>` (the report reads only *.json)."""
    for number in itertools.count(1):
        kept = path.with_name(f"{path.name}.replaced-{number}")
        if not kept.exists():
            path.rename(kept)
            return kept
    raise AssertionError("unreachable")


def report_stale_cells(pending: list[tuple], paths: dict, identities: dict, force: bool) -> None:
    """Say which finished cells this run recomputes, and why (their old files are kept as `.replaced-<n>`)."""
    stale = [key for key in pending if paths[key].exists()]
    for key in stale:
        reason = "--force" if force else stale_reason(paths[key], identities[key])
        log.warning("recomputing %s (%s); the old file is kept beside it", paths[key], reason)
