"""Spread the grid's cells over several jobs with submitit: job i of N runs the grid's `--shard i/N` slice, on this
machine (`local`: real subprocesses) or on a SLURM cluster. A job that dies is submitted again (`--retries`), and the
new one takes over the claims the dead one left (bench/claims.py); the caller writes the report once all are done.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import bench.builtin_suite  # noqa: F401  (registers the built-in suite in the job's process)
import bench.real_suite  # noqa: F401  (registers the real and paper suites)
from bench.grid import GridOutcome, GridSpec, run_grid
from bench.suites import SUITES

if TYPE_CHECKING:
    import submitit

log = logging.getLogger(__name__)
LAUNCHERS = ("local", "slurm")
LOCAL_TIMEOUT_MINUTES = 7 * 24 * 60  # submitit's local jobs are killed after 2 minutes unless told otherwise
JOBS_FOLDER = "jobs"  # under --out: each job's pickled call, result and logs


@dataclass(frozen=True)
class LauncherSettings:
    """How to spread the grid: the engine, the number of jobs (= shards), and the few SLURM options passed on."""

    kind: str = "local"
    jobs: int = 2
    retries: int = 1  # how many times a job that died is submitted again
    slurm_partition: str | None = None
    slurm_time: int = 24 * 60  # minutes
    slurm_gpus_per_task: int | None = None
    poll_seconds: float = 1.0


@dataclass
class ShardResult:
    """What the jobs of one shard did: the last attempt's outcome, or why the grid or the job did not finish."""

    shard: tuple[int, int]
    attempts: int = 0
    outcome: GridOutcome = field(default_factory=GridOutcome)
    error: str = ""

    def keep(self, output: GridOutcome | str) -> None:
        """Keep what the shard's job returned: the grid's outcome, or why the grid was refused."""
        if isinstance(output, GridOutcome):
            self.outcome = output
        else:
            self.error = output

    def describe(self) -> str:
        name = f"shard {self.shard[0]}/{self.shard[1]}"
        tries = f" (attempt {self.attempts})" if self.attempts > 1 else ""
        if self.error:
            return f"{name} did not finish{tries}: {self.error}"
        return f"{name}: {len(self.outcome.computed)} cell(s) computed, {len(self.outcome.failures)} did not run{tries}"


def run_shard(spec: GridSpec, environment: dict[str, str | None]) -> GridOutcome | str:
    """The job itself: one shard of the grid in the job's process, with `environment` restored first (submitit's
    local jobs hide the GPUs). A grid refused before any cell runs comes back as its message: a retry would be too."""
    for name, value in environment.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_grid(spec)
    except ValueError as error:
        return str(error)


def anchored(spec: GridSpec) -> GridSpec:
    """`spec` with its folders made absolute, so a job started elsewhere (a cluster node) reads and writes the same."""
    options = spec.suite_options
    options = dataclasses.replace(options, **{name: Path(getattr(options, name)).resolve()
                                              for name in ("cache_dir", "data_dir", "checkpoints_dir")
                                              if getattr(options, name) is not None})  # fmt: skip
    suite = spec.suite if spec.suite in SUITES or not Path(spec.suite).exists() else str(Path(spec.suite).resolve())
    return dataclasses.replace(spec, suite=suite, out=spec.out.resolve(), suite_options=options)


def make_executor(settings: LauncherSettings, folder: Path) -> submitit.Executor:
    """submitit's executor for `settings.kind`, its jobs' files under `folder`."""
    try:
        import submitit  # an optional dependency: only --launcher needs it
    except ImportError:
        raise RuntimeError("--launcher: needs submitit; pip install 'lora-compose-bench[cluster]'") from None
    if settings.kind == "local":
        executor = submitit.LocalExecutor(folder=folder)
        executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MINUTES)
        return executor
    executor = submitit.SlurmExecutor(folder=folder)
    slurm = {"partition": settings.slurm_partition, "gpus_per_task": settings.slurm_gpus_per_task}
    executor.update_parameters(job_name="lora-compose-bench", time=settings.slurm_time,
                               **{name: value for name, value in slurm.items() if value is not None})  # fmt: skip
    return executor


def job_error(job: submitit.Job, error: Exception) -> str:
    """One line on why `job` did not finish, and where its log is."""
    from submitit.core.utils import UncompletedJobError

    if isinstance(error, UncompletedJobError):
        return f"job {job.job_id} died without a result (state {job.state}); its log: {job.paths.stderr}"
    lines = str(error).splitlines()  # submitit puts the job's traceback between two lines of dashes
    rules = [number for number, line in enumerate(lines) if line and set(line) == {"-"}]
    trace = lines[rules[0] + 1 : rules[1]] if len(rules) >= 2 else lines
    last = next((line.strip() for line in reversed(trace) if line.strip()), type(error).__name__)
    return f"job {job.job_id} failed with {last}; its log: {job.paths.stderr}"


def launch_shards(spec: GridSpec, settings: LauncherSettings) -> list[ShardResult]:
    """Submit one job per shard of `spec`, submit again each that dies (up to `settings.retries` times), wait for
    all; return each shard's result in shard order."""
    spec = anchored(spec)
    executor = make_executor(settings, spec.out / JOBS_FOLDER)
    environment = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")} if settings.kind == "local" else {}
    shards = [(index, settings.jobs) for index in range(settings.jobs)]
    results = {shard: ShardResult(shard) for shard in shards}

    def submit(shard: tuple[int, int]) -> submitit.Job:
        results[shard].attempts += 1
        return executor.submit(run_shard, dataclasses.replace(spec, shard=shard), environment)

    running = {shard: submit(shard) for shard in shards}
    while running:
        time.sleep(settings.poll_seconds)
        for shard, job in [(shard, job) for shard, job in running.items() if job.done()]:
            del running[shard]
            if (error := job.exception()) is None:
                results[shard].keep(job.result())
            elif results[shard].attempts <= settings.retries:
                log.warning("shard %d/%d: %s; submitting it again", *shard, job_error(job, error))
                running[shard] = submit(shard)
            else:
                results[shard].error = job_error(job, error)
    return [results[shard] for shard in shards]
