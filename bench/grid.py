"""The experiment grid: methods x tasks x languages x seeds, one JSON file per finished cell.

A cell file appears atomically once its cell is finished, so rerunning the same command skips what is done (an
interrupted grid resumes) and no cell is ever half-written. What a method learned is saved under `state/` and reused.
The whole grid is checked against the suite before any cell runs; a cell whose method refuses it (or fails) is
recorded and the grid goes on with the others.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
import logging
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.cell_identity import FIT_FIELDS, cell_identity, cell_inputs, changed_inputs, identity_key, suite_inputs
from bench.generation import generate_completions
from bench.storage import atomic_directory, exclusive_lock, save_tensors_atomic, write_json_atomic
from bench.suites import Suite, SuiteOptions, load_suite, suite_display_name
from methods.data_parallel import SINGLE_PROCESS, DataParallel
from methods.registry import Cell, load_all_methods, make_config
from methods.training import TrainingDiverged
from tasks.registry import TASKS

log = logging.getLogger(__name__)
STATE_DONE_FILE = "DONE"
# What methods raise when an option, the suite or the cell's data does not let them run (hydralora without the zoo's
# data, oracle without composite data, a diverged fit); any other exception in a cell is a bug.
REFUSALS = (ValueError, TrainingDiverged)


@dataclass
class GridSpec:
    """One run of the grid, as the CLI describes it."""

    suite: str
    methods: list[str]
    tasks: list[str]
    languages: list[str]
    seeds: list[int]
    out: Path
    limit: int | None = None
    generation_batch_size: int | None = None  # None: the suite's own
    force: bool = False
    method_options: dict[str, dict[str, str]] = field(default_factory=dict)
    suite_options: SuiteOptions = field(default_factory=SuiteOptions)


@dataclass
class CellFailure:
    """A cell the grid could not compute: refused by its method, or failed with an unexpected error (a bug, whose
    traceback is kept for `--debug`)."""

    method: str
    task: str
    language: str
    seed: int
    message: str
    unexpected: bool = False
    traceback: str = ""

    def describe(self) -> str:
        what = f"failed with an unexpected {self.message}" if self.unexpected else f"refused: {self.message}"
        return f"{self.method} on {cell_name(self.task, self.language, self.seed)} {what}"


@dataclass
class GridOutcome:
    """What one run of the grid did: the cell files it wrote and the cells it could not compute."""

    computed: list[Path] = field(default_factory=list)
    failures: list[CellFailure] = field(default_factory=list)


def cell_name(task: str, language: str, seed: int) -> str:
    return f"{task}-{language}-seed{seed}"


def cell_path(out: Path, suite: str, method: str, task: str, language: str, seed: int) -> Path:
    return out / "cells" / suite / method / f"{cell_name(task, language, seed)}.json"


def _config_record(config) -> dict:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}


def finished_identity_key(path: Path) -> str | None:
    """The identity key a finished cell file records (None: no such file; '' : unreadable or recorded without one)."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return ""
    return record.get("identity_key", "") if isinstance(record, dict) else ""


def stale_reason(path: Path, identity: dict) -> str:
    """Why the finished cell at `path` is not a result for `identity`: the inputs that changed."""
    try:
        old = json.loads(path.read_text(encoding="utf-8")).get("identity")
    except (json.JSONDecodeError, OSError, UnicodeDecodeError, AttributeError):
        return "its file is unreadable"
    return ", ".join(changed_inputs(old, identity)) + " changed"


def set_aside(path: Path) -> Path:
    """Keep a replaced cell file beside the new one as `<cell>.json.replaced-<n>` (the report reads only *.json)."""
    for number in itertools.count(1):
        kept = path.with_name(f"{path.name}.replaced-{number}")
        if not kept.exists():
            path.rename(kept)
            return kept
    raise AssertionError("unreachable")


def process_share(options: SuiteOptions) -> tuple[DataParallel, SuiteOptions]:
    """This process's place among those `accelerate launch` (or `torchrun`) started, and the suite options it runs
    with (each process its own GPU; CPU processes talk over gloo). Started plainly: one process, options unchanged."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SINGLE_PROCESS, options
    from accelerate import PartialState  # only multi-process runs set up torch.distributed

    cpu = options.device == "cpu" or not torch.cuda.is_available()
    state = PartialState(cpu=cpu)
    device = "cpu" if cpu else str(state.device)
    return DataParallel(state.process_index, state.num_processes), dataclasses.replace(options, device=device)


def is_first_process() -> bool:
    """False only in the second and later processes of a multi-process launch (they leave reports to the first)."""
    return int(os.environ.get("RANK", "0")) == 0


def load_suite_main_first(spec: GridSpec, options: SuiteOptions, parallel: DataParallel) -> Suite:
    """Load the suite; with several processes the first builds any cache while the others wait, then they read it."""
    if not parallel.is_main:
        parallel.barrier()
    suite = load_suite(spec.suite, options)
    if parallel.is_main:
        parallel.barrier()
    return suite


def check_grid(suite: Suite, keys: list[tuple], methods: dict[str, type], configs: dict) -> None:
    """Refuse the grid before any cell runs: a task/language the suite lacks, or options that do not fit a cell's
    candidates (a method's optional `check_options(config, adapters)`); the error names the option at fault."""
    missing = [f"{task}/{language}" for task, language in dict.fromkeys(key[1:3] for key in keys)
               if (task, language) not in suite.cells]  # fmt: skip
    if missing:
        available = ", ".join(f"{t}/{l}" for t, l in sorted(suite.cells))
        raise ValueError(f"--tasks/--langs: suite '{suite.name}' has no cell {', '.join(missing)}; it has {available}")
    for method_name, task, language in dict.fromkeys(key[:3] for key in keys):
        check_options = getattr(methods[method_name], "check_options", None)
        if check_options is not None:
            check_options(configs[method_name], suite.cell_adapters(task, language))


def cell_failure(error: Exception, method: str, task: str, language: str, seed: int) -> CellFailure:
    """The record of a cell that raised `error` (called inside its `except`, so the traceback is the cell's)."""
    if isinstance(error, REFUSALS):
        return CellFailure(method, task, language, seed, str(error))
    return CellFailure(method, task, language, seed, f"{type(error).__name__}: {error}", unexpected=True,
                       traceback=traceback.format_exc())  # fmt: skip


def run_grid(spec: GridSpec) -> GridOutcome:
    """Run every unfinished cell of the grid; return the cell files computed by this run and the cells that failed.

    A cell whose method refuses it or fails is recorded and the grid goes on (a long grid is not lost to one
    method); an OSError (full disk, lost folder) stops it, since every later cell would meet it too. Under several
    processes, all of them work on each cell together (data-parallel training, generation shared out) and the first
    one alone writes files; the others return no paths.
    """
    methods = load_all_methods()
    configs = {name: make_config(methods[name], spec.method_options.get(name, {})) for name in spec.methods}
    keys = list(itertools.product(spec.methods, spec.tasks, spec.languages, spec.seeds))
    suite_name = suite_display_name(spec.suite)
    parallel, suite_options = process_share(spec.suite_options)
    outcome = GridOutcome()
    with exclusive_lock(spec.out) if parallel.is_main else contextlib.nullcontext():
        started = time.perf_counter()
        suite = load_suite_main_first(spec, suite_options, parallel)
        build_seconds = time.perf_counter() - started
        check_grid(suite, keys, methods, configs)
        identities = grid_identities(suite, keys, configs, spec.limit)
        paths = {key: cell_path(spec.out, suite_name, *key) for key in keys}
        pending = [key for key in keys
                   if spec.force or finished_identity_key(paths[key]) != identity_key(identities[key])]  # fmt: skip
        parallel.barrier()  # every process has its list before the first cell is written
        if parallel.is_main:
            report_stale_cells(pending, paths, identities, spec.force)
        for method_name, task, language, seed in tqdm(pending, desc="grid", disable=not parallel.is_main):
            method_class, config = methods[method_name], configs[method_name]
            identity = identities[(method_name, task, language, seed)]
            try:
                record = run_cell(suite, method_class, config, task, language, seed, spec, parallel, identity)
            except OSError:
                raise
            except Exception as error:  # recorded and reported at the end; the other cells still run
                outcome.failures.append(cell_failure(error, method_name, task, language, seed))
                log.warning("%s; going on with the other cells", outcome.failures[-1].describe())
                continue
            if parallel.is_main:
                record.update(identity_key=identity_key(identity), identity=identity,
                              suite_build_seconds=round(build_seconds, 3), processes=parallel.world)  # fmt: skip
                path = paths[(method_name, task, language, seed)]
                if path.exists():
                    set_aside(path)
                write_json_atomic(path, record)
                outcome.computed.append(path)
    return outcome


def grid_identities(suite: Suite, keys: list[tuple], configs: dict, limit: int | None) -> dict[tuple, dict]:
    """Each cell's identity (bench/cell_identity.py): what its result is computed from."""
    shared = suite_inputs(suite)
    inputs = {cell: cell_inputs(suite, shared, *cell) for cell in dict.fromkeys(key[1:3] for key in keys)}
    return {(method, task, language, seed):
            cell_identity(method, _config_record(configs[method]), limit, seed, inputs[(task, language)])
            for method, task, language, seed in keys}  # fmt: skip


def report_stale_cells(pending: list[tuple], paths: dict, identities: dict, force: bool) -> None:
    """Say which finished cells this run recomputes, and why (their old files are kept as `.replaced-<n>`)."""
    stale = [key for key in pending if paths[key].exists()]
    for key in stale:
        reason = "--force" if force else stale_reason(paths[key], identities[key])
        log.warning("recomputing %s (%s); the old file is kept beside it", paths[key], reason)


def _make_cell(
    suite: Suite, task: str, language: str, seed: int, shared_directory: Path, parallel: DataParallel = SINGLE_PROCESS
) -> Cell:
    if (task, language) not in suite.cells:
        available = ", ".join(f"{t}/{l}" for t, l in sorted(suite.cells))
        raise ValueError(f"--tasks/--langs: suite '{suite.name}' has no cell {task}/{language}; it has {available}")
    data = suite.cells[(task, language)]
    return Cell(
        model=copy.deepcopy(suite.model),
        tokenizer=suite.tokenizer,
        adapters=suite.cell_adapters(task, language),
        train=data.train,
        dev=data.dev,
        seed=seed,
        task=task,
        language=language,
        zoo=list(suite.adapters.values()),
        composite_train=data.composite_train,
        gate_temperature=data.gate_temperature,
        zoo_training_data=suite.zoo_training_data,
        base_model_id=suite.base_model_id,
        shared_directory=shared_directory,
        parallel=parallel,
    )


def _fit_or_load(method, state_directory: Path, force: bool, parallel: DataParallel, fit_key: str = "") -> dict:
    """Load what the method learned when a finished state of the same fit inputs exists (its DONE file holds
    `fit_key`; any finished state when the key is empty); otherwise fit and save it atomically (the first process
    saves; every process holds the same fitted state)."""
    if not method.learns:
        return {"fit_seconds": 0.0, "reused_state": False}
    done = state_directory / STATE_DONE_FILE
    if not force and done.is_file() and (not fit_key or done.read_text(encoding="utf-8").strip() == fit_key):
        method.load(state_directory)
        return {"fit_seconds": 0.0, "reused_state": True}
    started = time.perf_counter()
    method.fit()
    fit_seconds = time.perf_counter() - started
    if parallel.is_main:
        with atomic_directory(state_directory) as scratch:
            method.save(scratch)
            (scratch / STATE_DONE_FILE).write_text(f"{fit_key or 'ok'}\n", encoding="utf-8")
    return {"fit_seconds": fit_seconds, "reused_state": False}


def score_all(score, examples, completions) -> list[bool]:
    """Score completions in parallel threads (code scoring waits on sandbox subprocesses)."""
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return list(pool.map(score, examples, completions))


def build_cell_method(
    suite: Suite, method_class: type, config, task: str, language: str, seed: int, out: Path, force: bool,
    parallel: DataParallel = SINGLE_PROCESS, fit_key: str = "",
) -> tuple[object, dict]:
    """The method for one cell with its composed `model`, fitted or loaded from `<out>/state/` (a state saved under
    another `fit_key` is refitted); and its fit info."""
    torch.manual_seed(seed)
    method_state = out / "state" / suite.name / method_class.name
    # A method may name another whose once-learned state it reuses (hydralora_tuned starts from hydralora's model).
    shared_directory = method_state.parent / getattr(method_class, "shares_state_with", method_class.name) / "shared"
    method = method_class(_make_cell(suite, task, language, seed, shared_directory, parallel), config)
    fit_info = _fit_or_load(method, method_state / cell_name(task, language, seed), force, parallel, fit_key)
    return method, fit_info


def run_cell(
    suite: Suite, method_class: type, config, task: str, language: str, seed: int, spec: GridSpec,
    parallel: DataParallel = SINGLE_PROCESS, identity: dict | None = None,
) -> dict | None:
    """Fit (or load), generate on the test split, score; return the cell's record (None on all but the first process)."""
    fit_key = identity_key(identity, FIT_FIELDS) if identity else ""
    method, fit_info = build_cell_method(suite, method_class, config, task, language, seed, spec.out, spec.force,
                                         parallel, fit_key)  # fmt: skip
    task_spec = TASKS[task]
    test = suite.cells[(task, language)].test[: spec.limit]
    batch_size = spec.generation_batch_size or suite.generation_batch_size
    started = time.perf_counter()
    completions = generate_completions(
        method.model,
        suite.tokenizer,
        [example.prompt for example in test],
        *suite.answer_limits(task),
        batch_size=batch_size,
        batch_context=getattr(method, "record_weights", None),
        parallel=parallel,
    )
    generate_seconds = time.perf_counter() - started
    traces = parallel.gather(method.recorded_weights([e.id for e in test])) if hasattr(method, "recorded_weights") else []
    if not parallel.is_main:
        return None
    started = time.perf_counter()
    correct = score_all(task_spec.scorer_for(language), test, completions)
    score_seconds = time.perf_counter() - started
    if traces:
        trace_path = spec.out / "traces" / suite.name / method_class.name / f"{cell_name(task, language, seed)}.safetensors"
        save_tensors_atomic(trace_path, {name: tensor for part in traces for name, tensor in part.items()})
    return {
        "method": method_class.name,
        "suite": suite.name,
        "task": task,
        "language": language,
        "seed": seed,
        "metric": task_spec.metric,
        "score": 100.0 * sum(correct) / max(len(correct), 1),
        "n": len(correct),
        "config": _config_record(config),
        "adapters": {adapter.name: suite.adapter_sha256[adapter.name] for adapter in suite.cell_adapters(task, language)},
        "trainable_parameters": getattr(method, "trainable_parameter_count", 0),
        "fit_history": getattr(method, "history", []),
        "timings": {"fit": fit_info["fit_seconds"], "generate": generate_seconds, "score": score_seconds},
        "generation_batch_size": batch_size,
        "reused_state": fit_info["reused_state"],
        "generations": [
            {"id": example.id, "completion": completion, "correct": ok}
            for example, completion, ok in zip(test, completions, correct)
        ],
    }
