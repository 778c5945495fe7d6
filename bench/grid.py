"""The experiment grid: methods x tasks x languages x seeds, one JSON file per finished cell.

A cell file appears atomically once its cell is finished, so rerunning the same command skips what is done (an
interrupted grid resumes) and no cell is ever half-written. What a method learned is saved under `state/` and reused.
The whole grid is checked against the suite before any cell runs; a cell whose method refuses it (or fails) is
recorded and the grid goes on with the others. Several runs may share one output folder (`--shard I/N` gives each a
slice of the cells): a run computes a cell only while it holds the cell's claim (bench/claims.py).
"""

from __future__ import annotations

import copy
import functools
import dataclasses
import itertools
import logging
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bench.cell_identity import FIT_FIELDS, cell_identity, cell_inputs, identity_key, suite_inputs
from bench.claims import CLAIM_TIMEOUT_SECONDS, CellClaims
from bench.fit_cache import cached_fit_directory, fit_cache_default
from bench.cell_records import (CellFailure, cell_failure, cell_name, finished_identity_key, report_stale_cells,
                                set_aside)
from bench.generation import generate_completions
from bench.storage import atomic_directory, save_tensors_atomic, write_json_atomic
from bench.suites import Suite, SuiteOptions, load_suite, suite_display_name
from methods.data_parallel import SINGLE_PROCESS, DataParallel
from methods.registry import Cell, load_all_methods, make_config
from tasks.examples import Example
from tasks.registry import TASKS

log = logging.getLogger(__name__)
STATE_DONE_FILE = "DONE"


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
    shard: tuple[int, int] | None = None  # (I, N): only the I-th of N slices of the cells (shard_keys); None: all
    claim_timeout: float = CLAIM_TIMEOUT_SECONDS  # seconds without a heartbeat after which a cell's claim is stale
    fit_cache: bool = field(default_factory=fit_cache_default)  # reuse and keep fits in the cache (bench.fit_cache)


@dataclass
class GridOutcome:
    """What one run of the grid did: the cell files it wrote and the cells it could not compute."""

    computed: list[Path] = field(default_factory=list)
    failures: list[CellFailure] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # cells another, live run still held at the end, with their holder
    taken_over: list[str] = field(default_factory=list)  # claims of runs that died, taken over by this one


@dataclass
class LoadedGrid:
    """What each cell of one run needs: the suite, the methods and their options, each cell's identity and files."""

    spec: GridSpec
    suite: Suite
    methods: dict[str, type]
    configs: dict
    identities: dict[tuple, dict]
    paths: dict[tuple, Path]
    claim_paths: dict[tuple, Path]
    parallel: DataParallel
    build_seconds: float
    started_at: float  # wall-clock time this run started (a cell file newer than it was written during the run)


def cell_path(out: Path, suite: str, method: str, task: str, language: str, seed: int) -> Path:
    return out / "cells" / suite / method / f"{cell_name(task, language, seed)}.json"


def claim_path(out: Path, suite: str, method: str, task: str, language: str, seed: int) -> Path:
    """The cell's claim file, there while a run computes it (bench/claims.py)."""
    return out / "claims" / suite / method / f"{cell_name(task, language, seed)}.claim"


def _config_record(config) -> dict:
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else {}


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


def shard_keys(keys: list[tuple], shard: tuple[int, int] | None) -> list[tuple]:
    """The `index`-th of `count` slices of the grid's cells: every `count`-th of the sorted (method, task, language,
    seed) keys from the `index`-th on, so slices are disjoint, differ by at most one cell (per method, when a method
    has at least `count` cells) and do not depend on the order of the options; the grid's order is kept within one."""
    if shard is None:
        return keys
    index, count = shard
    chosen = set(sorted(keys)[index::count])
    return [key for key in keys if key in chosen]


def run_grid(spec: GridSpec) -> GridOutcome:
    """Run every unfinished cell of the grid (of its `--shard` slice); return the cell files computed by this run,
    the cells that failed and those left to another run that holds them.

    A cell whose method refuses it or fails is recorded and the grid goes on (a long grid is not lost to one
    method); an OSError (full disk, lost folder) stops it, since every later cell would meet it too. Under several
    processes, all of them work on each cell together (data-parallel training, generation shared out) and the first
    one alone claims cells and writes files; the others return no paths.
    """
    grid = load_grid(spec)
    pending = [key for key in shard_keys(list(grid.identities), spec.shard)
               if spec.force or finished_identity_key(grid.paths[key]) != identity_key(grid.identities[key])]  # fmt: skip
    grid.parallel.barrier()  # every process has its list before the first cell is written
    if grid.parallel.is_main:
        report_stale_cells(pending, grid.paths, grid.identities, spec.force)
    claims, outcome = CellClaims(spec.claim_timeout), GridOutcome()
    with tqdm(pending, desc="grid", disable=not grid.parallel.is_main) as progress:  # closed before any error prints
        busy = [key for key in progress if not claim_and_run(grid, claims, key, outcome)]
    busy = [key for key in busy if not claim_and_run(grid, claims, key, outcome)]  # a second look, at the end
    if grid.parallel.is_main:
        outcome.left = [f"{key[0]} on {cell_name(*key[1:])} (claimed by {claims.holder(grid.claim_paths[key])})"
                        for key in busy]  # fmt: skip
        outcome.taken_over = claims.taken_over
    return outcome


def load_grid(spec: GridSpec) -> LoadedGrid:
    """Load the suite and the methods, check the whole grid (so every shard refuses a bad one alike), and work out
    each cell's identity and file."""
    methods = load_all_methods()
    configs = {name: make_config(methods[name], spec.method_options.get(name, {})) for name in spec.methods}
    keys = list(itertools.product(spec.methods, spec.tasks, spec.languages, spec.seeds))
    parallel, suite_options = process_share(spec.suite_options)
    started_at, started = time.time(), time.perf_counter()
    suite = load_suite_main_first(spec, suite_options, parallel)
    build_seconds = time.perf_counter() - started
    check_grid(suite, keys, methods, configs)
    name = suite_display_name(spec.suite)
    files = [{key: where(spec.out, name, *key) for key in keys} for where in (cell_path, claim_path)]
    return LoadedGrid(spec, suite, methods, configs, grid_identities(suite, keys, configs, spec.limit), *files,
                      parallel, build_seconds, started_at)  # fmt: skip


def claim_and_run(grid: LoadedGrid, claims: CellClaims, key: tuple, outcome: GridOutcome) -> bool:
    """Run the cell `key` while holding its claim; False if a live run holds it. A cell another run finished since
    this one listed it is not run again. Under several processes the first claims and tells the others."""
    claim = verdict = None
    if grid.parallel.is_main:
        claim = claims.acquire(grid.claim_paths[key])
        verdict = "busy" if claim is None else "done" if finished_meanwhile(grid, key) else "run"
    verdict = grid.parallel.gather(verdict)[0]
    try:
        if verdict == "run":
            run_and_write(grid, key, outcome)
    finally:
        if claim is not None:
            claim.release()
    return verdict != "busy"


def finished_meanwhile(grid: LoadedGrid, key: tuple) -> bool:
    """Whether another run has written the cell `key` for the same identity since this run listed it (under
    --force: since this run started)."""
    path = grid.paths[key]
    if finished_identity_key(path) != identity_key(grid.identities[key]):
        return False
    return not grid.spec.force or path.stat().st_mtime >= grid.started_at


def run_and_write(grid: LoadedGrid, key: tuple, outcome: GridOutcome) -> None:
    """Compute one cell and write its file (the first process); a refusal or failure is added to `outcome`."""
    method_name, task, language, seed = key
    identity = grid.identities[key]
    try:
        record = run_cell(grid.suite, grid.methods[method_name], grid.configs[method_name], task, language, seed,
                          grid.spec, grid.parallel, identity)  # fmt: skip
    except OSError:
        raise
    except Exception as error:  # recorded and reported at the end; the other cells still run
        outcome.failures.append(cell_failure(error, method_name, task, language, seed))
        log.warning("%s; going on with the other cells", outcome.failures[-1].describe())
        if grid.parallel.is_main:
            set_aside_stale(grid.paths[key], identity)
        return
    if grid.parallel.is_main:
        record.update(identity_key=identity_key(identity), identity=identity,
                      suite_build_seconds=round(grid.build_seconds, 3), processes=grid.parallel.world)  # fmt: skip
        if (path := grid.paths[key]).exists():
            set_aside(path)
        write_json_atomic(path, record)
        outcome.computed.append(path)


def set_aside_stale(path: Path, identity: dict) -> None:
    """After a cell failed: a finished file of other inputs (other options, data, ...) is no result of this run, so
    it leaves the table (kept beside as `.replaced-<n>`); one of the same inputs (a `--force` rerun) stays."""
    if path.exists() and finished_identity_key(path) != identity_key(identity):
        log.warning("%s was computed from other inputs; kept beside as %s, out of the table", path, set_aside(path).name)


def grid_identities(suite: Suite, keys: list[tuple], configs: dict, limit: int | None) -> dict[tuple, dict]:
    """Each cell's identity (bench/cell_identity.py): what its result is computed from."""
    shared = suite_inputs(suite)
    inputs = {cell: cell_inputs(suite, shared, *cell) for cell in dict.fromkeys(key[1:3] for key in keys)}
    return {(method, task, language, seed):
            cell_identity(method, _config_record(configs[method]), limit, seed, inputs[(task, language)])
            for method, task, language, seed in keys}  # fmt: skip


def make_cell(
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
        checkpoint_choice=data.checkpoint_choice,
        dev_accuracy=functools.partial(dev_accuracy, suite, task, language, parallel=parallel),
        zoo_training_data=suite.zoo_training_data,
        base_model_id=suite.base_model_id,
        shared_directory=shared_directory,
        parallel=parallel,
    )


def dev_accuracy(suite: Suite, task: str, language: str, model: torch.nn.Module,
                 parallel: DataParallel = SINGLE_PROCESS) -> float:  # fmt: skip
    """Accuracy (%) of `model` on the cell's dev split, generated and scored as the test split is."""
    dev = suite.cells[(task, language)].dev
    completions = generate_completions(model, suite.tokenizer, [example.prompt for example in dev],
                                       *suite.answer_limits(task), batch_size=suite.generation_batch_size,
                                       parallel=parallel)  # fmt: skip
    correct = VERDICTS.score(task, language, dev, completions)
    return 100.0 * sum(correct) / max(len(correct), 1)


def _fit_or_load(method, state_directory: Path, force: bool, parallel: DataParallel, fit_key: str = "",
                 cached: Path | None = None) -> dict:  # fmt: skip
    """Load what the method learned when a finished state of the same fit inputs exists (its DONE file holds
    `fit_key`; any finished state when the key is empty) in `state_directory`, else in the fit cache's `cached`
    (copied into `state_directory`, so the output folder holds every state its cells used); otherwise fit and save it
    atomically in both (the first process saves; every process holds the same fitted state)."""
    if not method.learns:
        return {"fit_seconds": 0.0, "reused_state": False}
    for found in (state_directory, cached):
        if not force and found is not None and _finished_state(found, fit_key):
            method.load(found)
            if found == cached and parallel.is_main:
                _copy_state(cached, state_directory)
            return {"fit_seconds": 0.0, "reused_state": True}
    started = time.perf_counter()
    method.fit()
    fit_seconds = time.perf_counter() - started
    if parallel.is_main:
        with atomic_directory(state_directory) as scratch:
            method.save(scratch)
            (scratch / STATE_DONE_FILE).write_text(f"{fit_key or 'ok'}\n", encoding="utf-8")
        if cached is not None:
            _copy_state(state_directory, cached)
    return {"fit_seconds": fit_seconds, "reused_state": False}


def _finished_state(directory: Path, fit_key: str) -> bool:
    done = directory / STATE_DONE_FILE
    return done.is_file() and (not fit_key or done.read_text(encoding="utf-8").strip() == fit_key)


def _copy_state(source: Path, target: Path) -> None:
    """Copy a finished state folder; the copy appears whole or not at all."""
    with atomic_directory(target) as scratch:
        shutil.copytree(source, scratch, dirs_exist_ok=True)


def score_all(score, examples, completions) -> list[bool]:
    """Score completions in parallel threads (code scoring waits on sandbox subprocesses)."""
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        return list(pool.map(score, examples, completions))


class Verdicts:
    """The verdicts this process has computed, by task, scorer, language, example and completion. Methods
    often write the same program for an item (in the default run LoRA-Flow and LoraHub agree on a quarter of the
    code items), and a verdict depends on nothing else, so a completion already scored is not run again."""

    def __init__(self) -> None:
        self._known: dict[tuple, bool] = {}

    def score(self, task: str, language: str, examples: list[Example], completions: list[str]) -> list[bool]:
        """The verdicts of `completions` on `examples`, scoring (in parallel, see `score_all`) only the new ones."""
        spec = TASKS[task]
        keys = [(task, spec.score, spec.scorer_version, language, example, completion)
                for example, completion in zip(examples, completions, strict=True)]  # fmt: skip
        new = list(dict.fromkeys(key for key in keys if key not in self._known))
        verdicts = score_all(spec.scorer_for(language), [key[4] for key in new], [key[5] for key in new])
        self._known.update(zip(new, verdicts))
        return [self._known[key] for key in keys]


VERDICTS = Verdicts()


def build_cell_method(
    suite: Suite, method_class: type, config, task: str, language: str, seed: int, spec: GridSpec,
    parallel: DataParallel = SINGLE_PROCESS, fit_key: str = "",
) -> tuple[object, dict]:
    """The method for one cell with its composed `model`, fitted or loaded from `<out>/state/` or the fit cache
    (`bench.fit_cache`; a state saved under another `fit_key` is refitted); and its fit info."""
    torch.manual_seed(seed)
    method_state = spec.out / "state" / suite.name / method_class.name
    # A method may name another whose once-learned state it reuses (hydralora_tuned starts from hydralora's model).
    shared_directory = method_state.parent / getattr(method_class, "shares_state_with", method_class.name) / "shared"
    method = method_class(make_cell(suite, task, language, seed, shared_directory, parallel), config)
    cell = cell_name(task, language, seed)
    cached = (cached_fit_directory(spec.suite_options, suite, method_class.name, cell, fit_key)
              if spec.fit_cache and fit_key else None)  # fmt: skip
    fit_info = _fit_or_load(method, method_state / cell, spec.force, parallel, fit_key, cached)
    return method, fit_info


def run_cell(
    suite: Suite, method_class: type, config, task: str, language: str, seed: int, spec: GridSpec,
    parallel: DataParallel = SINGLE_PROCESS, identity: dict | None = None,
) -> dict | None:
    """Fit (or load), generate on the test split, score; return the cell's record (None on all but the first process)."""
    fit_key = identity_key(identity, FIT_FIELDS) if identity else ""
    method, fit_info = build_cell_method(suite, method_class, config, task, language, seed, spec, parallel, fit_key)
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
    correct = VERDICTS.score(task, language, test, completions)
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
