"""Crash-safe files: a result is either absent or complete, never half-written."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import save_file


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON to a temporary file beside `path`, flush it to disk, then rename it over `path`."""
    write_text_atomic(path, payload, lambda handle: json.dump(payload, handle, ensure_ascii=False, indent=1, sort_keys=True))


def write_text_atomic(path: Path, text, write=None) -> None:
    """Write `text` (or call `write(handle)`) into a temporary file beside `path`, flush it, rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            write(handle) if write else handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def save_tensors_atomic(path: Path, tensors: dict) -> None:
    """safetensors file written beside `path`, then renamed over it (a killed run leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(temporary))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: Path):
    """Yield a scratch directory that becomes `path` only if the block finishes without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        yield scratch
        shutil.rmtree(path, ignore_errors=True)
        os.replace(scratch, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def build_once(directory: Path, done_file: str, build: Callable[[], object]) -> Path:
    """`directory`, built by `build()` unless its `done_file` exists. Runs sharing a cache (shards, cluster jobs)
    build it once: the others wait on a lock file beside it, then find it built."""
    if not (directory / done_file).is_file():
        directory.parent.mkdir(parents=True, exist_ok=True)
        with open(directory.with_name(f".{directory.name}.lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes, also when the holder dies
            if not (directory / done_file).is_file():
                build()
    return directory


@contextlib.contextmanager
def exclusive_lock(directory: Path):
    """Refuse a second run writing into the same output folder at the same time."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / ".lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(f"--out {directory}: another run is writing into this folder; wait for it or pick another")
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def file_sha256(path: Path) -> str:
    """Hex digest of a file's bytes (adapter identity in result files)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
