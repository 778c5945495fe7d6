"""The README's first table is what its main command prints on the shipped default suite, to the digit.

The table was measured on one kind of CPU with one thread count (both in the README's marker); the test runs with that
thread count. On that instruction set the rows must be equal; on another, float sums may round otherwise and a greedy
decode may flip, so there the test names the rows that differ and requires each cell within 3 points.
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
    threads = torch.get_num_threads()  # other tests may have changed it; the README's run used its own count
    torch.set_num_threads(int(match.group("threads")))
    try:
        assert main([*arguments, "--out", str(tmp_path / "results")]) == 0
    finally:
        torch.set_num_threads(threads)
    printed = (tmp_path / "results" / "table.md").read_text().splitlines()[2 : 2 + len(rows)]  # after the suite line
    if torch.backends.cpu.get_cpu_capability() == match.group("cpu"):
        assert printed == rows
    else:
        differing = [f"README {a!r} / here {b!r}" for a, b in zip(rows, printed) if a != b]
        gaps = [abs(x - y) for a, b in zip(rows, printed) for x, y in zip(numbers(a), numbers(b))]
        assert len(printed) == len(rows) and max(gaps, default=0) <= 3, differing
