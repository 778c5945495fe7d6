"""The README's first table is what its main command prints on the shipped default suite, to the digit.

The table was measured on one kind of CPU (its torch capability and thread count are in the README's marker): there
the rows must be equal; on another instruction set or thread count float sums may round otherwise and a greedy decode
may flip, so there the test names the rows that differ and requires each cell within 3 points.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from bench.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"<!-- table of: python run_all\.py (?P<arguments>[^(>]*)\(measured on (?P<cpu>\S+) with "
                   r"(?P<threads>\d+) threads\) -->\n(?P<table>(?:\|.*\n)+)")  # fmt: skip


def readme_table() -> re.Match:
    match = BLOCK.search(README.read_text(encoding="utf-8"))
    assert match, "README.md has no '<!-- table of: python run_all.py ... (measured on CPU with N threads) -->' block"
    return match


def numbers(row: str) -> list[float]:
    return [float(cell) for cell in re.findall(r"-?\d+\.\d+", row)]


def test_the_main_command_prints_the_readme_table(tmp_path):
    match = readme_table()
    arguments, rows = match.group("arguments").split(), match.group("table").splitlines()
    assert arguments == ["--methods", "loraflow,lorahub"]
    assert main([*arguments, "--out", str(tmp_path / "results")]) == 0
    printed = (tmp_path / "results" / "table.md").read_text().splitlines()[2 : 2 + len(rows)]  # after the suite line
    same_machine = (torch.backends.cpu.get_cpu_capability(), torch.get_num_threads()) == (
        match.group("cpu"), int(match.group("threads")))  # fmt: skip
    if same_machine:
        assert printed == rows
    else:
        differing = [f"README {a!r} / here {b!r}" for a, b in zip(rows, printed) if a != b]
        assert all(max(abs(x - y) for x, y in zip(numbers(a), numbers(b)) or [0]) <= 3 for a, b in zip(rows, printed)), differing
