"""The default built-in suite, shipped built: its base model, tokenizer and zoo (about 5 MB) are package data.

A fresh install loads these bytes instead of building them (minutes on CPU), so every machine computes its table
from the same model and adapters, and the README's table is what the first run prints. Each file's sha256 is pinned
below; a changed file is refused. The builder stays: `python -m bench.shipped_suite` rebuilds the entry from the
settings, compares it with the pinned bytes and, with `--replace`, ships the new build and prints the hashes to pin.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench.storage import file_sha256

SHIPPED_ROOT = Path(__file__).resolve().parent / "shipped"
SHIPPED_KEY = "429899ae6d52"  # BuiltinSettings().key() of the shipped build
SHIPPED_SHA256 = {}


def shipped_directory(key: str) -> Path | None:
    """The shipped cache entry for settings of `key`, checked against the pinned hashes; None when none is shipped."""
    directory = SHIPPED_ROOT / f"builtin-{key}"
    if key != SHIPPED_KEY or not directory.is_dir():
        return None
    for name, pinned in SHIPPED_SHA256.items():
        path = directory / name
        if not path.is_file() or file_sha256(path) != pinned:
            raise ValueError(f"{path}: missing or changed (sha256 pinned in bench/shipped_suite.py is {pinned[:12]}...);"
                             " reinstall the package, or rebuild it with `python -m bench.shipped_suite --replace`")
    return directory


def entry_hashes(directory: Path) -> dict[str, str]:
    """sha256 of every file of a cache entry, by path relative to it (build.json's timings left out)."""
    return {str(path.relative_to(directory)): file_sha256(path) for path in sorted(directory.rglob("*"))
            if path.is_file() and path.name != "build.json"}  # fmt: skip


def differences(built: dict[str, str], pinned: dict[str, str]) -> list[str]:
    """What differs between two entries' hashes, a line per file."""
    return [f"{name}: built {built.get(name, 'absent')[:12]}, shipped {pinned.get(name, 'absent')[:12]}"
            for name in sorted(set(built) | set(pinned)) if built.get(name) != pinned.get(name)]  # fmt: skip


def rebuild(replace: bool) -> list[str]:
    """Build the default suite from nothing; return how it differs from the shipped bytes (ship it with `replace`)."""
    from bench.builtin_suite import BuiltinSettings, build_entry  # the builder imports this module

    settings = BuiltinSettings()
    with tempfile.TemporaryDirectory() as scratch:
        built = build_entry(settings, Path(scratch))
        found = differences(entry_hashes(built), SHIPPED_SHA256)
        if replace:
            target = SHIPPED_ROOT / f"builtin-{settings.key()}"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(built, target)
            print(f"shipped {target}; pin these in bench/shipped_suite.py:")
            print(f'SHIPPED_KEY = "{settings.key()}"')
            print(f"SHIPPED_SHA256 = {entry_hashes(target)!r}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replace", action="store_true", help="ship the new build in place of the shipped one")
    found = rebuild(parser.parse_args().replace)
    print("identical to the shipped bytes" if not found else "differs from the shipped bytes:\n" + "\n".join(found))


if __name__ == "__main__":
    main()
