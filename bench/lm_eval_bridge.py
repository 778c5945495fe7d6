"""Score a composed model with lm-evaluation-harness: any registered method on any suite cell, on any lm-eval task.

The model is built as the grid builds it (`bench.grid.build_cell_method`), so a finished fit under `<out>/state/` is
reused; a math cell's test split becomes a local lm-eval task named `<suite>_<task>_<lang>` (`tasks.lm_eval_configs`).
    python -m bench.lm_eval_bridge --suite builtin --method loraflow --task math --lang zh --limit 20
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from lm_eval.utils import handle_non_serializable, make_table

from bench.cli import DEFAULT_SUITE, parse_method_options
from bench.grid import _config_record, build_cell_method, cell_name
from bench.storage import exclusive_lock, write_json_atomic
from bench.suites import Suite, SuiteOptions, load_suite, suite_display_name
from methods.registry import load_all_methods, make_config
from tasks.examples import write_examples
from tasks.lm_eval_configs import write_math_task_yaml
from tasks.registry import ALL_LANGUAGES, TASKS, resolve_names

CELL_TASKS = ("math",)  # the tasks whose cells have a local lm-eval config (code would need lm-eval's unsafe mode)


def evaluate_with_lm_eval(
    model, tokenizer, tasks: list[str], include_path: Path | list[Path] | None, limit: int | None, seed: int,
    *, batch_size: int = 16, log_samples: bool = False, include_defaults: bool = True,
) -> dict:  # fmt: skip
    """Run lm-eval's `simple_evaluate` on an in-memory model and tokenizer; return lm-eval's results dict.

    `include_path` adds local task YAMLs; `include_defaults=False` skips indexing lm-eval's own tasks (8 s).
    """
    paths = [include_path] if isinstance(include_path, (str, Path)) else list(include_path or [])
    task_manager = TaskManager(include_path=[str(path) for path in paths] or None, include_defaults=include_defaults)
    unknown = sorted(set(tasks) - set(task_manager.all_tasks))
    if unknown:
        searched = ", ".join((["lm-eval's own tasks"] if include_defaults else []) + [str(path) for path in paths])
        raise ValueError(f"--lm-eval-tasks: unknown lm-eval task(s) {unknown}; searched {searched or 'nothing'}")
    hflm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    return simple_evaluate(
        model=hflm,
        tasks=list(tasks),
        task_manager=task_manager,
        limit=limit,
        log_samples=log_samples,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
    )


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


def results_path(out: Path, suite: str, method: str, task: str, language: str, seed: int, tasks: list[str]) -> Path:
    """Where one bridge run's JSON goes: `<out>/lm_eval/<suite>/<method>/<cell>/<task+task>.json`."""
    return out / "lm_eval" / suite / method / cell_name(task, language, seed) / f"{'+'.join(tasks)}.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Evaluate one composed model (method x cell) with lm-eval.")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help="a registered suite or a path to a suite.json")
    parser.add_argument("--method", required=True, help="one registered method")
    parser.add_argument("--task", default="math", help="the cell's task (which adapters and fit)")
    parser.add_argument("--lang", required=True, help="the cell's language")
    parser.add_argument("--seed", type=int, default=0, help="the cell's seed (fit) and lm-eval's seeds")
    parser.add_argument("--lm-eval-tasks", default=None, help="comma list of lm-eval tasks; default: the cell's own")
    parser.add_argument("--include-path", type=Path, default=None, help="a folder of extra lm-eval task YAMLs")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N documents of each task")
    parser.add_argument("--out", default="results", type=Path, help="output folder (state is reused from here)")
    parser.add_argument("--batch-size", type=int, default=None, help="lm-eval batch size; default: the suite's")
    parser.add_argument("--log-samples", action="store_true", help="keep lm-eval's per-document samples in the JSON")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=VALUE", help="a method option")
    parser.add_argument("--force", action="store_true", help="refit even when a finished fit exists")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    parser.add_argument("--cache-dir", default=Path(".cache/lora_compose_bench"), type=Path, help="built suites")
    parser.add_argument("--data-dir", type=Path, help="public data sets (real and paper suites)")
    parser.add_argument("--checkpoints", type=Path, help="the released LoRA-Flow adapters and gates (paper suite)")
    return parser


def check_arguments(arguments: argparse.Namespace) -> tuple[str, dict[str, str], list[str]]:
    """Check every option before any work starts; return the method name, its option overrides, the lm-eval tasks."""
    methods = load_all_methods()
    if arguments.method not in methods:
        raise ValueError(f"--method {arguments.method}: unknown method; valid: {', '.join(sorted(methods))}")
    resolve_names("--task", arguments.task, tuple(TASKS))
    resolve_names("--lang", arguments.lang, ALL_LANGUAGES)
    if arguments.limit is not None and arguments.limit < 1:
        raise ValueError(f"--limit {arguments.limit}: must be at least 1")
    if arguments.batch_size is not None and arguments.batch_size < 1:
        raise ValueError(f"--batch-size {arguments.batch_size}: must be at least 1")
    if arguments.include_path is not None and not arguments.include_path.is_dir():
        raise ValueError(f"--include-path {arguments.include_path}: not a folder")
    if arguments.out.exists() and not arguments.out.is_dir():
        raise ValueError(f"--out {arguments.out}: exists and is not a folder")
    if arguments.lm_eval_tasks is None and arguments.task not in CELL_TASKS:
        own = ", ".join(CELL_TASKS)
        raise ValueError(f"--lm-eval-tasks: required for task '{arguments.task}' (only {own} cells have their own)")
    default_task = lm_eval_task_name(suite_display_name(arguments.suite), arguments.task, arguments.lang)
    tasks = [name.strip() for name in (arguments.lm_eval_tasks or default_task).split(",") if name.strip()]
    if not tasks:
        raise ValueError(f"--lm-eval-tasks {arguments.lm_eval_tasks!r}: no task given")
    overrides = parse_method_options(arguments.set, [arguments.method]).get(arguments.method, {})
    return arguments.method, overrides, tasks


def run_bridge(arguments: argparse.Namespace) -> tuple[dict, Path]:
    """Build or load the cell's composed model, evaluate it with lm-eval, write the JSON; return results and path."""
    method_name, overrides, tasks = check_arguments(arguments)
    method_class = load_all_methods()[method_name]
    config = make_config(method_class, overrides)
    options = SuiteOptions(cache_dir=arguments.cache_dir, device=arguments.device, dtype=arguments.dtype,
                           data_dir=arguments.data_dir, checkpoints_dir=arguments.checkpoints)  # fmt: skip
    suite = load_suite(arguments.suite, options)
    task, language, seed, out = arguments.task, arguments.lang, arguments.seed, arguments.out
    include = [arguments.include_path] if arguments.include_path else []
    with exclusive_lock(out):  # the fit is saved under <out>/state, as a grid run would save it
        method, fit_info = build_cell_method(suite, method_class, config, task, language, seed, out, arguments.force)
        if task in CELL_TASKS:
            include.append(out / "lm_eval" / "tasks" / suite.name)
            write_cell_task(suite, task, language, include[-1])
    results = evaluate_with_lm_eval(
        method.model, suite.tokenizer, tasks, include, arguments.limit, seed,
        batch_size=arguments.batch_size or suite.generation_batch_size, log_samples=arguments.log_samples,
    )  # fmt: skip
    record = {
        "suite": suite.name, "method": method_name, "task": task, "language": language, "seed": seed,
        "config": _config_record(config), "limit": arguments.limit, "reused_state": fit_info["reused_state"],
        "adapters": {a.name: suite.adapter_sha256[a.name] for a in suite.cell_adapters(task, language)},
        "lm_eval": json.loads(json.dumps(results, default=handle_non_serializable)),
    }  # fmt: skip
    path = results_path(out, suite.name, method_name, task, language, seed, tasks)
    write_json_atomic(path, record)
    return results, path


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        results, path = run_bridge(arguments)
    except (ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(make_table(results))
    if results.get("groups"):
        print(make_table(results, "groups"))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
