"""Fitted states shared by every output folder: what a method learned in a cell, kept under `<cache dir>/fits/`.

A cell's fitted state lives in its output folder (`<out>/state/`), where a rerun into the same folder reuses it.
The fit cache keeps a copy, so a run into a new folder reuses it too instead of fitting again. Its key covers every
input of the fit (the cell identity's fit fields: suite, base model and tokenizer bytes, adapter bytes, data,
method options, seed), the device kind and dtype, the versions of torch, transformers and peft, and the project's
own source (bench/, methods/, tasks/): a fit by other code is never reused, whatever its inputs. `--force` fits
again and replaces the copy; `--no-fit-cache` (or LORA_COMPOSE_BENCH_FIT_CACHE=0) neither reads nor writes it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
from pathlib import Path

import torch

from bench.cell_identity import text_digest
from bench.suites import Suite, SuiteOptions

FITS_FOLDER = "fits"
ENVIRONMENT_SWITCH = "LORA_COMPOSE_BENCH_FIT_CACHE"  # "0": off (the tests' default, so each test fits its own)
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SOURCE_PACKAGES = ("bench", "methods", "tasks")
LIBRARIES = ("torch", "transformers", "peft")


def fit_cache_default() -> bool:
    """Whether runs use the fit cache unless told otherwise: yes, unless LORA_COMPOSE_BENCH_FIT_CACHE is 0."""
    return os.environ.get(ENVIRONMENT_SWITCH, "1").strip() != "0"


@functools.cache
def code_digest() -> str:
    """sha256 over the project's Python source, file by file, and the versions of the libraries that fit."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            digest.update(f"{path.relative_to(PROJECT_ROOT)}\0".encode() + path.read_bytes() + b"\0")
    for library in LIBRARIES:
        digest.update(f"{library}={importlib.metadata.version(library)}\0".encode())
    return digest.hexdigest()


def cached_fit_directory(options: SuiteOptions, suite: Suite, method: str, cell: str, fit_key: str) -> Path:
    """Where the fit cache keeps the state of `method` in `cell` (e.g. "math-zh-seed0") fitted from `fit_key`'s
    inputs on the suite's device and dtype by this code."""
    device = next(suite.model.parameters(), torch.empty(0)).device.type
    key = text_digest({"fit": fit_key, "code": code_digest(), "device": device, "dtype": options.dtype})[:16]
    return options.cache_dir / FITS_FOLDER / suite.name / method / f"{cell}-{key}"
