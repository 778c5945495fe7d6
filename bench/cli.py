"""The command line: parse options, check every name at once, run the grid, write the report."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import traceback
from pathlib import Path
from typing import NoReturn

import bench.builtin_suite  # noqa: F401  (registers the built-in suite)
import bench.real_suite  # noqa: F401  (registers the real and paper suites)
from bench.plots.figures import draw_all_figures
from bench.claims import CLAIM_TIMEOUT_SECONDS
from bench.fit_cache import ENVIRONMENT_SWITCH, fit_cache_default
from bench.grid import CellFailure, GridOutcome, GridSpec, is_first_process, run_grid
from bench.launcher import LAUNCHERS, LauncherSettings, launch_shards
from bench.report import read_cells, write_report
from bench.suites import SUITES, SuiteOptions
from methods.registry import load_all_methods, resolve_method_names
from tasks.registry import ALL_LANGUAGES, COMPOSITE_LANGUAGES, TASKS, resolve_names

DEFAULT_SUITE = "builtin"
MAX_SEED = 2**32 - 1  # numpy's RandomState (LoraHub's search) takes seeds in [0, 2**32)
# The launcher's options (argparse names = LauncherSettings fields) and the smallest value each takes
LAUNCHER_OPTIONS = {"jobs": 1, "retries": 0, "slurm_partition": None, "slurm_time": 1, "slurm_gpus_per_task": 0}
log = logging.getLogger(__name__)


class CommandLineError(ValueError):
    """An argument argparse refuses, raised (instead of argparse's usage text and exit) to print as one `error:` line."""


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, whose refusals (`--limit abc`, an unknown option) go through `main`'s one-line `error:` form."""

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(description="Compare ways of combining LoRA adapters on composite tasks.")
    parser.add_argument("--methods", default="base,lora,average,lorahub,loraflow", help="comma list, a group (lora) or 'all'")
    parser.add_argument("--suite", default=DEFAULT_SUITE, help="a registered suite or a path to a suite.json")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma list of tasks")
    parser.add_argument("--langs", default=",".join(COMPOSITE_LANGUAGES), help="comma list of languages")
    parser.add_argument("--seeds", default="0", help="comma list of integer seeds")
    parser.add_argument("--out", default="results", type=Path, help="output folder (cells, state, tables, plots)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N test items of each cell")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="prompts per generation batch (default: the suite's; raise it on a GPU)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16")
    parser.add_argument("--cache-dir", default=Path(".cache/lora_compose_bench"), type=Path, help="built models and zoos")
    parser.add_argument("--data-dir", type=Path, help="public data sets (real and paper suites; see README)")
    parser.add_argument("--checkpoints", type=Path, help="the released LoRA-Flow adapters and gates (paper suite)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.OPTION=VALUE", help="a method option")
    parser.add_argument("--force", action="store_true", help="recompute finished cells and fits")
    parser.add_argument("--fit-cache", action=argparse.BooleanOptionalAction, default=fit_cache_default(),
                        help="reuse fits made for another --out from the cache (default: on, unless "
                             f"{ENVIRONMENT_SWITCH}=0)")  # fmt: skip
    parser.add_argument("--allow-pickle", action="store_true", help="load pickle .bin adapters (tensors only)")
    parser.add_argument("--list", action="store_true", help="list methods, suites and tasks, then exit")
    parser.add_argument("--report-only", action="store_true", help="rewrite the tables from existing cells")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG and print the traceback of any error")
    add_scaling_options(parser)
    return parser


def add_scaling_options(parser: argparse.ArgumentParser) -> None:
    """Options for spreading one grid over several runs or jobs that share --out (README, "Scaling out")."""
    group = parser.add_argument_group("scaling out")
    group.add_argument("--shard", metavar="I/N", help="run only the I-th of N slices of the cells (I from 0)")
    group.add_argument("--claim-timeout", type=float, default=CLAIM_TIMEOUT_SECONDS, metavar="SECONDS",
                       help="a cell's claim without a heartbeat for this long is taken over (default: %(default)s)")
    group.add_argument("--launcher", choices=LAUNCHERS, help="submit --jobs jobs, one per shard, then write the report")
    group.add_argument("--jobs", type=int, help=f"jobs (= shards) for --launcher (default: {LauncherSettings.jobs})")
    group.add_argument("--retries", type=int, help=f"times --launcher submits again a job that died "
                       f"(default: {LauncherSettings.retries})")  # fmt: skip
    group.add_argument("--slurm-partition", help="SLURM partition of the jobs (--launcher slurm)")
    group.add_argument("--slurm-time", type=int, metavar="MINUTES",
                       help=f"SLURM time limit per job (default: {LauncherSettings.slurm_time})")
    group.add_argument("--slurm-gpus-per-task", type=int, help="GPUs per SLURM job")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """`--shard 1/4` -> (1, 4); None without --shard."""
    if text is None:
        return None
    index, slash, count = text.partition("/")
    if not (slash and index.strip().isdigit() and count.strip().isdigit() and int(index) < int(count)):
        raise ValueError(f"--shard {text}: expected I/N with 0 <= I < N, e.g. 0/4")
    return int(index), int(count)


def launcher_settings(arguments: argparse.Namespace) -> LauncherSettings | None:
    """The launcher's settings (None without --launcher); each option checked, naming it, before anything is run."""
    given = {name: getattr(arguments, name) for name in LAUNCHER_OPTIONS if getattr(arguments, name) is not None}
    for name, value in given.items():
        option, slurm_only = "--" + name.replace("_", "-"), name.startswith("slurm_")
        if arguments.launcher is None or (slurm_only and arguments.launcher != "slurm"):
            raise ValueError(f"{option}: only with --launcher {'slurm' if slurm_only else 'local or slurm'}")
        if (least := LAUNCHER_OPTIONS[name]) is not None and value < least:
            raise ValueError(f"{option} {value}: must be at least {least}")
    if arguments.launcher is None:
        return None
    if arguments.shard is not None:
        raise ValueError(f"--shard {arguments.shard}: --launcher gives each job its own shard; leave --shard out")
    return LauncherSettings(kind=arguments.launcher, **given)


def parse_method_options(settings: list[str], methods: list[str]) -> dict[str, dict[str, str]]:
    """`loraflow.learning_rate=1e-4` -> {'loraflow': {'learning_rate': '1e-4'}}."""
    options: dict[str, dict[str, str]] = {}
    for setting in settings:
        key, equals, value = setting.partition("=")
        method, dot, option = key.partition(".")
        if not equals or not dot or not option:
            raise ValueError(f"--set {setting}: expected METHOD.OPTION=VALUE")
        if method not in methods:
            raise ValueError(f"--set {setting}: method '{method}' is not in --methods ({', '.join(methods)})")
        options.setdefault(method, {})[option] = value
    return options


def without_repeats(option: str, values: list) -> list:
    """`values` in their order, each once; a repeat is noted (it would compute the same cells twice)."""
    unique = list(dict.fromkeys(values))
    if len(unique) < len(values):
        repeated = [str(value) for value in unique if values.count(value) > 1]
        log.warning("%s: %s given more than once; each runs once", option, ", ".join(repeated))
    return unique


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text}: expected a comma list of integers") from None
    if not seeds:
        raise ValueError("--seeds: no seed given")
    if out_of_range := [seed for seed in seeds if not 0 <= seed <= MAX_SEED]:
        raise ValueError(f"--seeds {text}: seed {out_of_range[0]} is outside 0 to {MAX_SEED}")
    return without_repeats("--seeds", seeds)


def spec_from_arguments(arguments: argparse.Namespace) -> GridSpec:
    """Check every option before any work starts; errors name the option at fault."""
    methods = resolve_method_names(arguments.methods)
    for option, value in (("--limit", arguments.limit), ("--batch-size", arguments.batch_size)):
        if value is not None and value < 1:
            raise ValueError(f"{option} {value}: must be at least 1")
    if arguments.out.exists() and not arguments.out.is_dir():
        raise ValueError(f"--out {arguments.out}: exists and is not a folder")
    if not arguments.claim_timeout > 0:
        raise ValueError(f"--claim-timeout {arguments.claim_timeout}: must be more than 0 seconds")
    return GridSpec(
        suite=arguments.suite,
        methods=methods,
        tasks=without_repeats("--tasks", resolve_names("--tasks", arguments.tasks, tuple(TASKS))),
        languages=without_repeats("--langs", resolve_names("--langs", arguments.langs, ALL_LANGUAGES)),
        seeds=parse_seeds(arguments.seeds),
        out=arguments.out,
        limit=arguments.limit,
        generation_batch_size=arguments.batch_size,
        force=arguments.force,
        fit_cache=arguments.fit_cache,
        method_options=parse_method_options(arguments.set, methods),
        shard=parse_shard(arguments.shard),
        claim_timeout=arguments.claim_timeout,
        suite_options=SuiteOptions(
            cache_dir=arguments.cache_dir, device=arguments.device, dtype=arguments.dtype, allow_pickle=arguments.allow_pickle,
            data_dir=arguments.data_dir, checkpoints_dir=arguments.checkpoints,
        ),
    )


def timing_breakdown(cell_paths: list[Path]) -> str:
    """Seconds spent building the suite, fitting, generating and scoring, summed over the cells computed now."""
    totals = {"build": 0.0, "fit": 0.0, "generate": 0.0, "score": 0.0}
    for path in cell_paths:
        record = json.loads(path.read_text(encoding="utf-8"))
        totals["build"] = max(totals["build"], record.get("suite_build_seconds", 0.0))
        for step in ("fit", "generate", "score"):
            totals[step] += record["timings"][step]
    return ", ".join(f"{step} {seconds:.1f} s" for step, seconds in totals.items())


def print_listing() -> None:
    print("methods:", ", ".join(sorted(load_all_methods())), "(group: lora = language_lora,skill_lora)")
    print("suites: ", ", ".join(sorted(SUITES)), "(or a path to a suite.json)")
    print("tasks:  ", ", ".join(TASKS))
    print("languages:", ", ".join(ALL_LANGUAGES))


def print_failures(failures: list[CellFailure], debug: bool) -> None:
    """One `error:` line per cell that did not run (method, cell, reason); tracebacks of bugs with --debug."""
    print(f"{len(failures)} cell(s) did not run; the report holds the finished ones:", file=sys.stderr)
    for failure in failures:
        hint = " (rerun with --debug for the traceback)" if failure.unexpected and not debug else ""
        print(f"error: {failure.describe()}{hint}", file=sys.stderr)
        if debug and failure.traceback:
            print(failure.traceback, file=sys.stderr)


def print_claims(outcome: GridOutcome) -> None:
    """Say which cells were left to other runs that hold them, and which claims of dead runs were taken over."""
    for cell in outcome.left:
        print(f"note: {cell} was left to the run that holds it; rerun the same command once it has finished")
    for claim in outcome.taken_over:
        print(f"note: {claim}")


def run_here(arguments: argparse.Namespace) -> tuple[GridSpec, GridOutcome]:
    """Run the grid (or its --shard slice) in this process and say what it did."""
    started = time.perf_counter()
    spec = spec_from_arguments(arguments)
    launcher_settings(arguments)  # refuses launcher-only options given without --launcher
    outcome = run_grid(spec)
    if is_first_process():
        what = "grid" if spec.shard is None else f"shard {spec.shard[0]}/{spec.shard[1]}"
        print(f"{what} finished in {time.perf_counter() - started:.1f} s: {len(outcome.computed)} cell(s) computed "
              f"({timing_breakdown(outcome.computed)})")  # fmt: skip
        print_claims(outcome)
    return spec, outcome


def run_jobs(arguments: argparse.Namespace) -> tuple[list[CellFailure], list[str]]:
    """Run the grid as one job per shard (--launcher) and say what each did; return the cells that did not run and
    the shards whose jobs did not finish."""
    started = time.perf_counter()
    spec, settings = spec_from_arguments(arguments), launcher_settings(arguments)
    results = launch_shards(spec, settings)
    print(f"{len(results)} {settings.kind} job(s) finished in {time.perf_counter() - started:.1f} s")
    for result in results:
        print(result.describe())
        print_claims(result.outcome)
    failures = [failure for result in results for failure in result.outcome.failures]
    return failures, [result.describe() for result in results if result.error]


def write_and_print_report(out: Path) -> None:
    paths = write_report(out)
    figures = draw_all_figures(out)
    print(paths["markdown"].read_text(encoding="utf-8"))
    written = ", ".join(str(path) for path in paths.values())
    print(f"wrote {written} and {len(figures)} plots under {out / 'plots'}")


def run_and_report(arguments: argparse.Namespace) -> int:
    """Run the grid (unless --report-only; as jobs with --launcher), then write the report from every finished cell;
    2 if a cell or a job did not run. A run of one --shard leaves the report to `--report-only` after the last."""
    failures: list[CellFailure] = []
    unfinished: list[str] = []
    if arguments.report_only:
        pass
    elif arguments.launcher:
        failures, unfinished = run_jobs(arguments)
    else:
        spec, outcome = run_here(arguments)
        failures = outcome.failures
        if not is_first_process():
            return 2 if failures else 0  # the first process writes cells, report and plots
        if spec.shard is not None:
            print("the report is left to `--report-only`, run once every shard has finished")
    shard_alone = arguments.shard is not None and not arguments.report_only
    nothing_to_report = (failures or unfinished) and read_cells(arguments.out).empty  # only refusals, or jobs that died
    if not (shard_alone or nothing_to_report):
        write_and_print_report(arguments.out)
    for shard in unfinished:
        print(f"error: {shard}", file=sys.stderr)
    if failures:
        print_failures(failures, arguments.debug)
    return 2 if failures or unfinished else 0


def main(argv: list[str] | None = None) -> int:
    try:
        arguments = build_parser().parse_args(argv)
    except CommandLineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if arguments.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")  # fmt: skip
    if arguments.list:
        print_listing()
        return 0
    try:
        return run_and_report(arguments)
    except KeyboardInterrupt:  # cell files are written whole as each cell finishes, so none is lost
        print("interrupted: finished cells are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        if arguments.debug:
            traceback.print_exc()
        return 2
    except Exception as error:  # a bug: still one line for the user, the traceback for whoever fixes it
        hint = "" if arguments.debug else " (rerun with --debug for the traceback)"
        print(f"error: unexpected {type(error).__name__}: {error}{hint}", file=sys.stderr)
        if arguments.debug:
            traceback.print_exc()
        return 2
