"""lm-evaluation-harness task configs for our cells: MGSM-style math (last number, exact match) over local JSONL."""

from __future__ import annotations

from pathlib import Path

import yaml

from tasks.examples import replace_text

MATH_TEMPLATE = Path(__file__).with_name("mgsm_style_math_yaml")


class ReadableDumper(yaml.SafeDumper):
    """Writes strings holding line breaks (stop strings such as "\\n\\n\\n") double-quoted with escapes."""


def _represent_string(dumper: yaml.SafeDumper, text: str):
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style='"' if "\n" in text else None)


ReadableDumper.add_representer(str, _represent_string)


def read_math_template() -> dict:
    """The MGSM-style math task config, without its task name, data file, stop strings or length."""
    return yaml.safe_load(MATH_TEMPLATE.read_text(encoding="utf-8"))


def write_math_task_yaml(
    task_name: str, jsonl_path: Path, directory: Path, max_new_tokens: int, stop: tuple[str, ...] | list[str]
) -> Path:
    """Write `<directory>/<task_name>.yaml`: the math template over the examples in `jsonl_path`; return its path.

    The data path is written absolute, so the YAML works from any working directory.
    """
    jsonl_path = Path(jsonl_path).resolve()
    if not jsonl_path.is_file():
        raise FileNotFoundError(f"{jsonl_path}: task data file not found (for lm-eval task '{task_name}')")
    if max_new_tokens < 1:
        raise ValueError(f"lm-eval task '{task_name}': max_new_tokens must be at least 1 (got {max_new_tokens})")
    config = {"task": task_name, **read_math_template()}
    config["dataset_kwargs"] = {"data_files": {config["test_split"]: str(jsonl_path)}}
    config["generation_kwargs"].update(until=list(stop), max_gen_toks=max_new_tokens)
    path = Path(directory) / f"{task_name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_text(path, yaml.dump(config, Dumper=ReadableDumper, allow_unicode=True, sort_keys=False))
    return path
