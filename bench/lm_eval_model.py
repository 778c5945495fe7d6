"""The `lora-compose` model type of lm-evaluation-harness: one cell's composed model (any method, any suite), built
as the grid builds it, so lm-eval's own CLI, tasks, output and caching run on it.

    lora-compose-lm-eval --model lora-compose \
        --model_args suite=builtin,method=loraflow,task=math,lang=zh,seed=0,out=results --tasks builtin_math_zh

`model_args`: `method` and `lang` (required), `suite`, `task`, `seed`, `out` (the results folder whose fitted state
is reused, or where a new fit is saved), `cache_dir`, `data_dir`, `checkpoints`, `dtype`, `allow_pickle`, `force`,
and any method option as `METHOD.OPTION=VALUE` (as `--set`). A fit the grid left under `<out>/state/` (or in the
fit cache, `bench.fit_cache`) for the same fit inputs is loaded; otherwise the method is fitted and its state saved
there, while this run holds the cell's claim (bench/claims.py), so a grid run sharing `out` never fits it at the same
time. Under `accelerate launch` or `torchrun` every process fits together (data parallel, as the grid) and lm-eval
splits the documents over them.

`lora-compose-lm-eval` is lm-eval's own command line with this type registered, and the cell's own task
(`<suite>_<task>_<lang>`, the cell's test split as a local lm-eval task) written and put on `--include_path` when
`--tasks` names it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
from pathlib import Path

# Local task data and local models: never ask the hub. Set before `datasets` is imported, which reads it once.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

try:
    from lm_eval.api.registry import register_model
    from lm_eval.models.huggingface import HFLM
except ModuleNotFoundError as error:  # an optional extra: say how to get it, not a traceback
    if error.name != "lm_eval" and not (error.name or "").startswith("lm_eval."):
        raise
    raise SystemExit("the lm-eval model type needs lm-evaluation-harness: pip install -e '.[lm-eval]' "
                     "(or pip install 'lm-eval>=0.4.4')") from error

from bench.cell_identity import FIT_FIELDS, identity_key  # noqa: E402
from bench.claims import CellClaims  # noqa: E402
from bench.cli import DEFAULT_SUITE, build_parser, spec_from_arguments  # noqa: E402
from bench.grid import GridSpec, LoadedGrid, build_cell_method, load_grid  # noqa: E402
from bench.suites import Suite, load_suite, suite_display_name  # noqa: E402
from methods.registry import load_all_methods, make_config  # noqa: E402
from tasks.examples import write_examples  # noqa: E402
from tasks.lm_eval_configs import write_math_task_yaml  # noqa: E402

MODEL_TYPE = "lora-compose"
CELL_TASKS = ("math",)  # the tasks whose cells have a local lm-eval config (code would need lm-eval's unsafe mode)
# model_args -> the grid's command-line option of the same meaning (so every check and message is the grid's)
CELL_ARGUMENTS = {"suite": "--suite", "method": "--methods", "task": "--tasks", "lang": "--langs", "seed": "--seeds",
                  "out": "--out", "cache_dir": "--cache-dir", "data_dir": "--data-dir", "checkpoints": "--checkpoints",
                  "dtype": "--dtype", "device": "--device"}  # fmt: skip
CELL_FLAGS = {"allow_pickle": "--allow-pickle", "force": "--force"}
DEFAULTS = {"suite": DEFAULT_SUITE, "task": "math", "seed": 0, "out": "results"}


def split_model_args(model_args: dict) -> tuple[dict, dict]:
    """`model_args` split into those naming the cell (and its method's options) and those left for HFLM."""
    cell = {key: value for key, value in model_args.items() if key in CELL_ARGUMENTS or key in CELL_FLAGS or "." in key}
    return cell, {key: value for key, value in model_args.items() if key not in cell}


def grid_arguments(model_args: dict) -> argparse.Namespace:
    """The grid's command line for the one cell `model_args` name (`METHOD.OPTION` keys become `--set`), checked
    by the grid's own parser; an error names the model argument at fault."""
    given = {**DEFAULTS, **{key: value for key, value in model_args.items() if value is not None}}
    missing = [name for name in ("method", "lang") if name not in given]
    if missing:
        valid = ", ".join([*CELL_ARGUMENTS, *CELL_FLAGS, "METHOD.OPTION", "and HFLM's own"])
        raise ValueError(f"--model_args (model {MODEL_TYPE}): needs {', '.join(missing)}; valid: {valid}")
    argv = [part for key, value in given.items() if key in CELL_ARGUMENTS for part in (CELL_ARGUMENTS[key], str(value))]
    argv += [CELL_FLAGS[key] for key, value in given.items() if key in CELL_FLAGS and value]
    argv += [part for key, value in given.items() if "." in key for part in ("--set", f"{key}={value}")]
    try:
        return build_parser().parse_args(argv)
    except ValueError as error:
        raise model_args_error(error) from None


def model_args_error(error: ValueError) -> ValueError:
    """The grid's refusal of an option, told in model_args' terms (`--langs xx: ...` -> `lang xx: ...`)."""
    message = str(error).replace("--set ", "")
    for key, option in CELL_ARGUMENTS.items():
        message = re.sub(rf"{option}(?=[ :=])", key, message)
    return ValueError(f"--model_args (model {MODEL_TYPE}): {message}")


def cell_spec(model_args: dict) -> GridSpec:
    """The one-cell grid `model_args` name, every option checked as the grid checks it."""
    try:
        spec = spec_from_arguments(grid_arguments(model_args))
        for method in spec.methods:  # the options now, not after the suite has loaded
            make_config(load_all_methods()[method], spec.method_options.get(method, {}))
    except ValueError as error:
        raise model_args_error(error) from None
    for name, values in (("method", spec.methods), ("task", spec.tasks), ("lang", spec.languages), ("seed", spec.seeds)):
        if len(values) != 1:
            raise ValueError(f"--model_args (model {MODEL_TYPE}) {name}={model_args.get(name)}: one value, not a list")
    return spec


def build_composed_model(grid: LoadedGrid) -> tuple[object, dict]:
    """The cell's method with its composed model, and its fit info: its fitted state loaded from `<out>/state/` when
    a fit of the same inputs is there, else fitted and saved, holding the cell's claim while it does."""
    (key,) = grid.identities
    method_name, task, language, seed = key
    fit_key = identity_key(grid.identities[key], FIT_FIELDS)
    claim = CellClaims(grid.spec.claim_timeout).acquire(grid.claim_paths[key]) if grid.parallel.is_main else None
    held = grid.parallel.gather(claim is not None)[0]
    if not held:
        holder = CellClaims().holder(grid.claim_paths[key])
        raise RuntimeError(f"--model_args: {method_name} on this cell is being computed by {holder} in "
                           f"{grid.spec.out}; wait for it to finish, then run again")  # fmt: skip
    try:
        return build_cell_method(grid.suite, grid.methods[method_name], grid.configs[method_name], task, language,
                                 seed, grid.spec, grid.parallel, fit_key)  # fmt: skip
    finally:
        if claim is not None:
            claim.release()


@register_model(MODEL_TYPE)
class LoraComposeLM(HFLM):
    """lm-eval's HF model on one cell's composed model; `model_args` as in the module's docstring. Other arguments
    (batch_size, max_length, ...) are HFLM's; `device` is the suite's (auto, cpu, cuda)."""

    def __init__(self, batch_size: int | str | None = None, max_batch_size: int | None = 64, **model_args):
        cell_args, hflm_args = split_model_args(model_args)
        self.grid = load_grid(cell_spec(cell_args))
        self.method, self.fit_info = build_composed_model(self.grid)  # fit_info: fit_seconds, reused_state
        parallel = self.grid.parallel
        super().__init__(pretrained=self.method.model, tokenizer=self.grid.suite.tokenizer,
                         batch_size=batch_size or self.grid.suite.generation_batch_size,
                         max_batch_size=max_batch_size, **hflm_args)  # fmt: skip
        if parallel.world > 1:  # lm-eval forgoes data parallelism for a model given built; these are what it uses
            from accelerate import Accelerator

            self.accelerator = Accelerator(cpu=self.method.model.device.type == "cpu")
            self._rank, self._world_size = parallel.rank, parallel.world


def lm_eval_task_name(suite: str, task: str, language: str) -> str:
    """The name of a cell's own lm-eval task, e.g. `builtin_math_zh`."""
    return f"{suite}_{task}_{language}"


def write_cell_task(suite: Suite, task: str, language: str, directory: Path) -> str:
    """Write the cell's test split as JSONL and an lm-eval task YAML over it into `directory`; return the task name."""
    name = lm_eval_task_name(suite.name, task, language)
    data_path = directory / f"{name}.jsonl"
    write_examples(data_path, suite.cells[(task, language)].test)
    write_math_task_yaml(name, data_path, directory, *suite.answer_limits(task))
    return name


def cell_tasks_folder(out: Path, suite: str) -> Path:
    return Path(out) / "lm_eval" / "tasks" / suite


def add_cell_task(arguments: argparse.Namespace) -> None:
    """When lm-eval's `--tasks` names the cell's own task, write it (the cell's test split) and put its folder on
    `--include_path`."""
    spec = cell_spec(split_model_args(arguments.model_args or {})[0])
    suite_name, task, language = suite_display_name(spec.suite), spec.tasks[0], spec.languages[0]
    name = lm_eval_task_name(suite_name, task, language)
    if name not in (arguments.tasks or []):
        return
    if task not in CELL_TASKS:
        raise ValueError(f"--tasks {name}: only {', '.join(CELL_TASKS)} cells have their own lm-eval task")
    folder = cell_tasks_folder(spec.out, suite_name).resolve()
    if arguments.include_path and Path(arguments.include_path).resolve() != folder:
        raise ValueError(f"--include_path {arguments.include_path}: the cell's task {name} is written to {folder}; "
                         "leave --include_path out, or copy the task there and leave it out of --tasks")  # fmt: skip
    write_cell_task(load_suite(spec.suite, spec.suite_options), task, language, folder)
    arguments.include_path = str(folder)


def main(argv: list[str] | None = None) -> int:
    """`lora-compose-lm-eval`: lm-eval's own command line (`lm-eval run ...`, or its flags alone) with the
    `lora-compose` model type registered, and the cell's own task written when `--tasks` names it."""
    from lm_eval._cli import HarnessCLI
    from lm_eval.utils import setup_logging

    setup_logging()
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]  # HarnessCLI reads sys.argv (to insert `run` before bare flags)
    cli = HarnessCLI()
    arguments = cli.parse_args()
    try:
        if getattr(arguments, "model", None) == MODEL_TYPE:
            add_cell_task(arguments)
        cli.execute(arguments)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
