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
# sha256 of every shipped file (build.json, which holds timings, aside): printed by `--replace`
SHIPPED_SHA256 = {
    "base/config.json": "84279b6daafd6435fa0f9adbc5048bc965a48497fda0fb5614a4d888561e7445",
    "base/generation_config.json": "bdda0c5389129385ec0ee9e52c222d784335a82a3db28b78c24db27a8966542e",
    "base/model.safetensors": "f72af0a2efac68ab4c09973dcbf0e27cfef851cb648a3ffc63b5fcefb04620b1",
    "base/tokenizer.json": "773cc0fd1cd213382886be12bb9d866e3d720be11880a2cbee9f17c812a6282b",
    "base/tokenizer_config.json": "ad6dc6a5790d0f94170998ab79921c97d28ea54602abcdb33cba3132d13ac233",
    "zoo/language_es/README.md": "f213593e7a392f7d679c11a0f94a0320c2711a8bd359e4c3dae73287f03c7140",
    "zoo/language_es/adapter_config.json": "1995069832da65217cb7c5d3f34591edbf63666d113537414cee3f075e30665c",
    "zoo/language_es/adapter_model.safetensors": "d41f531b7fcf29790ab40f672f04b4a2a664a02b498782c3a29d6e7d84bfb012",
    "zoo/language_ru/README.md": "f213593e7a392f7d679c11a0f94a0320c2711a8bd359e4c3dae73287f03c7140",
    "zoo/language_ru/adapter_config.json": "1995069832da65217cb7c5d3f34591edbf63666d113537414cee3f075e30665c",
    "zoo/language_ru/adapter_model.safetensors": "633cb6b0caee6c0cca4e2a362b409afbd19d5fbf2734400b83a9fb3b7fee4fcb",
    "zoo/language_zh/README.md": "f213593e7a392f7d679c11a0f94a0320c2711a8bd359e4c3dae73287f03c7140",
    "zoo/language_zh/adapter_config.json": "1995069832da65217cb7c5d3f34591edbf63666d113537414cee3f075e30665c",
    "zoo/language_zh/adapter_model.safetensors": "175b2c8a03900571f6fd1e64011118822b6d8a82eb1cc6b72a5050ded00f1066",
    "zoo/skill_code/README.md": "f213593e7a392f7d679c11a0f94a0320c2711a8bd359e4c3dae73287f03c7140",
    "zoo/skill_code/adapter_config.json": "1995069832da65217cb7c5d3f34591edbf63666d113537414cee3f075e30665c",
    "zoo/skill_code/adapter_model.safetensors": "9cea05d43547a5debcd1fefa8db1a6c2c88a119565b63f057f46efc5d92dc44f",
    "zoo/skill_math/README.md": "f213593e7a392f7d679c11a0f94a0320c2711a8bd359e4c3dae73287f03c7140",
    "zoo/skill_math/adapter_config.json": "1995069832da65217cb7c5d3f34591edbf63666d113537414cee3f075e30665c",
    "zoo/skill_math/adapter_model.safetensors": "c61f94782cc064b75459889dd0a3247f0e84cdd889a260a84ecab65e0110b089",
    "zoo/zoo.json": "8cf55c476a1679a0a334202332ccdb5a2a41526386b1994ca9e998c819613622",
}


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
