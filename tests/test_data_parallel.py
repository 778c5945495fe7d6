"""Several processes (gloo on CPU): data-parallel training takes the single-process step; `accelerate launch` runs the
grid with each cell written once and the same table as one process for methods that train nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as multiprocessing

from methods.data_parallel import DataParallel
from methods.training import TrainingConfig, train_parameters
from bench.tokenizer_training import train_tokenizer
from tests.conftest import SAMPLE_TEXT, tiny_llama
from tasks.examples import Example

REPOSITORY = Path(__file__).resolve().parents[1]
TRAINING = TrainingConfig(learning_rate=1e-2, batch_size=5, epochs=2, evaluations=2)


def examples(count: int, prefix: str) -> list[Example]:
    return [Example(id=f"{prefix}{i}", prompt=f"{i} plus {i} is", target=f" {2 * i}" + " ok" * (i % 3)) for i in range(count)]


def train_tiny(parallel: DataParallel) -> tuple[list[torch.Tensor], list[dict]]:
    tokenizer = train_tokenizer(SAMPLE_TEXT, vocab_size=300)
    model = tiny_llama(len(tokenizer))
    parameters = [model.model.norm.weight] + [layer.mlp.down_proj.weight for layer in model.model.layers]
    for parameter in parameters:
        parameter.requires_grad_(True)
    history = train_parameters(model, tokenizer, parameters, examples(9, "t"), examples(5, "d"), TRAINING, seed=3,
                               parallel=parallel)  # fmt: skip
    return [parameter.detach().clone() for parameter in parameters], history


def _worker(rank: int, world: int, init_file: str, results: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    parameters, history = train_tiny(DataParallel(rank, world))
    torch.save({"parameters": parameters, "history": history}, f"{results}.{rank}")
    dist.destroy_process_group()


def test_two_process_training_takes_the_single_process_steps(tmp_path):
    torch.set_num_threads(1)
    single, single_history = train_tiny(DataParallel())
    multiprocessing.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path / "result")), nprocs=2)
    for rank in range(2):
        saved = torch.load(tmp_path / f"result.{rank}")
        for ours, reference in zip(saved["parameters"], single):
            torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-5)
        for ours, reference in zip(saved["history"], single_history):
            assert ours["step"] == reference["step"]
            assert abs(ours["train_loss"] - reference["train_loss"]) < 1e-4
            assert abs(ours["dev_loss"] - reference["dev_loss"]) < 1e-4


def test_shards_cover_every_item_once():
    items = list(range(11))
    shards = [DataParallel(rank, 3).shard(items) for rank in range(3)]
    assert sorted(item for shard in shards for item in shard) == items


def run_grid_command(launcher: list[str], suite: Path, out: Path) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [*launcher, "run_all.py", "--suite", str(suite), "--methods", "base,average,cat,lorahub,loraflow",
               "--tasks", "math", "--langs", "zh,es", "--device", "cpu", "--out", str(out),
               "--set", "lorahub.max_inference_step=6", "--set", "loraflow.epochs=2"]  # fmt: skip
    finished = subprocess.run(command, cwd=REPOSITORY, env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]


def test_accelerate_launch_with_two_processes_gives_the_one_process_table(tiny_suite, tmp_path):
    suite = tmp_path / "suite"
    shutil.copytree(tiny_suite, suite)
    spec = json.loads((suite / "suite.json").read_text())
    (suite / "suite.json").write_text(json.dumps({**spec, "generation_batch_size": 2}))  # 3 batches per cell
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    run_grid_command(launch, suite / "suite.json", tmp_path / "two")
    run_grid_command([sys.executable], suite / "suite.json", tmp_path / "one")
    one, two = (pd.read_csv(tmp_path / name / "results.csv") for name in ("one", "two"))
    cells = sorted((tmp_path / "two" / "cells").rglob("*.json"))
    assert len(cells) == 10 and not list((tmp_path / "two").rglob("*.partial"))
    assert {json.loads(cell.read_text())["processes"] for cell in cells} == {2}
    for method in ("base", "average", "cat", "lorahub"):
        for cell in (tmp_path / "one" / "cells").rglob(f"{method}/*.json"):
            other = tmp_path / "two" / cell.relative_to(tmp_path / "one")
            assert json.loads(cell.read_text())["generations"] == json.loads(other.read_text())["generations"]
    static = ~one["method"].eq("loraflow")
    pd.testing.assert_frame_equal(one[static].reset_index(drop=True), two[static].reset_index(drop=True))
    assert (tmp_path / "two" / "traces").is_dir()
