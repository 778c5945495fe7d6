"""`lora-compose-bench`, the console script `pip install -e .` puts on the PATH, is `python run_all.py`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import bench.cli
import run_all

SCRIPT = "lora-compose-bench"
REINSTALL = "pip install -q --no-deps -e ."  # registers the entry point of an edited pyproject.toml


def installed_script() -> Path:
    """The script pip wrote beside this interpreter (a venv's bin/ or Scripts/), else the one on the PATH."""
    beside = Path(sys.executable).parent / SCRIPT
    found = beside if beside.is_file() else shutil.which(SCRIPT)
    if not found:
        pytest.fail(f"no '{SCRIPT}' script installed; run `{REINSTALL}`")
    return Path(found)


def test_the_entry_point_is_run_alls_main():
    scripts = entry_points(group="console_scripts", name=SCRIPT)
    assert scripts, f"no console_scripts entry point '{SCRIPT}' is installed; run `{REINSTALL}`"
    (script,) = scripts
    assert script.load() is bench.cli.main is run_all.main


def test_the_script_lists_methods_and_exits_0():
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    finished = subprocess.run([str(installed_script()), "--list"], capture_output=True, text=True, timeout=300,
                              env=environment)  # fmt: skip
    assert finished.returncode == 0, finished.stderr
    assert "methods:" in finished.stdout and "loraflow" in finished.stdout
