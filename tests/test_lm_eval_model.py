"""The `lora-compose` lm-eval model type (bench/lm_eval_model.py): lm-eval's own `simple_evaluate` and command line on
a cell's composed model give the grid's generations, reuse the grid's fit, and split the documents over two processes;
and lm-eval's math scorer against ours.

Where the two math scorers legitimately differ, the case is listed in `SCORERS_DIFFER` with each side's verdict, so
that a change in either scorer shows up here instead of silently moving a number.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

# The task data is a local JSONL: never ask the hub. Set before `datasets` is imported, which reads it once.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.api.metrics import exact_match_hf_evaluate  # noqa: E402
from lm_eval.api.registry import get_filter  # noqa: E402
from lm_eval.filters.extraction import RegexFilter  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

import run_all  # noqa: E402
from bench.lm_eval_model import cell_tasks_folder, lm_eval_task_name, main, write_cell_task  # noqa: E402
from bench.suites import SuiteOptions, load_suite, suite_display_name  # noqa: E402
from tasks.lm_eval_configs import read_math_template, write_math_task_yaml  # noqa: E402
from tasks.scoring import score_math_answer  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
METRIC = "exact_match,flexible-extract"
FIT = {"loraflow.epochs": 2}  # the same option in the grid's run and lm-eval's, so lm-eval reuses the grid's fit


def lm_eval_says_correct(generation: str, gold: str) -> bool:
    """lm-eval's own verdict under our math template: its filter pipeline, then exact_match with its options."""
    template = read_math_template()
    (pipeline,) = template["filter_list"]
    responses = [[generation]]
    for step in pipeline["filter"]:
        options = {key: value for key, value in step.items() if key != "function"}
        responses = list(get_filter(step["function"])(**options).apply(responses, [{}]))
    (metric,) = template["metric_list"]
    options = {key: value for key, value in metric.items() if key not in ("metric", "aggregation", "higher_is_better")}
    return exact_match_hf_evaluate(predictions=responses, references=[gold], **options)["exact_match"] == 1.0


def model_args(suite: Path, method: str, out: Path) -> dict:
    options = {key: value for key, value in FIT.items() if key.startswith(method + ".")}
    return {"suite": str(suite), "method": method, "task": "math", "lang": "zh", "seed": 0, "out": str(out),
            "device": "cpu", **options}  # fmt: skip


@pytest.fixture(scope="module")
def grid_out(tiny_suite, tmp_path_factory):
    """The grid's own cells (average, and LoRA-Flow with its fit saved) on the tiny zh math cell, and its task."""
    out = tmp_path_factory.mktemp("lm_eval_out")
    command = ["--suite", str(tiny_suite), "--methods", "average,loraflow", "--tasks", "math", "--langs", "zh",
               "--out", str(out), "--device", "cpu", "--set", "loraflow.epochs=2"]  # fmt: skip
    assert run_all.main(command) == 0
    suite = load_suite(str(tiny_suite), SuiteOptions(device="cpu"))
    write_cell_task(suite, "math", "zh", cell_tasks_folder(out, suite.name))
    return out


def cell_task(tiny_suite) -> str:
    return lm_eval_task_name(suite_display_name(str(tiny_suite)), "math", "zh")


def grid_cell(out: Path, method: str) -> dict:
    (path,) = (out / "cells").glob(f"*/{method}/math-zh-seed0.json")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("method", ["average", "loraflow"])
def test_simple_evaluate_on_lora_compose_gives_the_grids_cell(grid_out, tiny_suite, method):
    """lm-eval's `simple_evaluate(model="lora-compose")`: the grid's fit is loaded (not refitted), the greedy texts
    are the grid's, and each document's verdict is lm-eval's scorer on them (ours on the grid's side)."""
    name = cell_task(tiny_suite)
    folder = cell_tasks_folder(grid_out, suite_display_name(str(tiny_suite)))
    results = simple_evaluate(model="lora-compose", model_args=model_args(tiny_suite, method, grid_out), tasks=[name],
                              task_manager=TaskManager(include_path=str(folder), include_defaults=False),
                              log_samples=True)  # fmt: skip
    cell = grid_cell(grid_out, method)
    samples = sorted(results["samples"][name], key=lambda sample: sample["doc_id"])
    assert [sample["resps"][0][0] for sample in samples] == [entry["completion"] for entry in cell["generations"]]
    for sample, entry in zip(samples, cell["generations"]):
        generation, gold = sample["resps"][0][0], sample["doc"]["answer"]
        assert bool(sample["exact_match"]) == lm_eval_says_correct(generation, gold)
        assert entry["correct"] == score_math_answer(generation, gold, "zh")
    agree = all(bool(s["exact_match"]) == e["correct"] for s, e in zip(samples, cell["generations"]))
    assert not agree or results["results"][name][METRIC] == pytest.approx(cell["score"] / 100)
    assert not list((grid_out / "claims").rglob("*.claim"))  # the claim held while loading the fit is released


def test_lm_eval_reuses_the_grids_fit(grid_out, tiny_suite):
    from lm_eval.api.registry import get_model

    lm = get_model("lora-compose").create_from_arg_obj(model_args(tiny_suite, "loraflow", grid_out))
    assert lm.fit_info["reused_state"] and lm.fit_info["fit_seconds"] == 0.0


def test_the_command_line_writes_the_cells_task_and_lm_evals_output(grid_out, tiny_suite, tmp_path, capsys):
    name, results = cell_task(tiny_suite), tmp_path / "lm_eval_results"
    cell = {key: value for key, value in model_args(tiny_suite, "average", tmp_path).items() if key != "device"}
    arguments = ",".join(f"{key}={value}" for key, value in cell.items())
    assert main(["--model", "lora-compose", "--model_args", arguments, "--tasks", name, "--output_path", str(results),
                 "--limit", "3", "--device", "cpu"]) == 0  # lm-eval's own --device reaches the suite  # fmt: skip
    assert (cell_tasks_folder(tmp_path, suite_display_name(str(tiny_suite))) / f"{name}.yaml").is_file()
    (written,) = results.rglob("results_*.json")
    record = json.loads(written.read_text(encoding="utf-8"))
    assert record["n-samples"][name]["effective"] == 3 and 0.0 <= record["results"][name][METRIC] <= 1.0
    assert name in capsys.readouterr().out  # lm-eval's own table


@pytest.mark.parametrize(("arguments", "message"), [
    ("suite=builtin,task=math,lang=zh", r"--model_args \(model lora-compose\): needs method"),
    ("method=nosuch,lang=zh", r"lora-compose\): method: unknown method 'nosuch'"),
    ("method=average,lang=xx", r"lora-compose\): lang: unknown .*'xx'"),
    ("method=average,lang=zh,average.nosuch=1", r"lora-compose\): average.nosuch: unknown option"),
])  # fmt: skip
def test_bad_model_args_fail_naming_the_argument(arguments, message, capsys):
    assert main(["--model", "lora-compose", "--model_args", arguments, "--tasks", "builtin_math_zh"]) == 2
    assert re.search(message, capsys.readouterr().err)


TWO_PROCESS_SCRIPT = """
import json, sys
from lm_eval import simple_evaluate
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager
import bench.lm_eval_model  # registers lora-compose
arguments, task, tasks_folder, result = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
lm = get_model("lora-compose").create_from_arg_obj(arguments)
evaluated = []
generate = lm.generate_until
lm.generate_until = lambda requests, *rest: evaluated.extend(r.doc_id for r in requests) or generate(requests, *rest)
results = simple_evaluate(model=lm, tasks=[task], task_manager=TaskManager(include_path=tasks_folder,
                          include_defaults=False), log_samples=True)
record = {"rank": lm.rank, "world": lm.world_size, "evaluated": evaluated}
if results is not None:  # the first process alone gets the merged results
    record["responses"] = {s["doc_id"]: s["resps"][0][0] for s in results["samples"][task]}
    record["score"] = results["results"][task]["exact_match,flexible-extract"]
json.dump(record, open(f"{result}.{lm.rank}", "w"))
"""


def test_two_processes_under_accelerate_each_evaluate_half_and_merge_to_one(grid_out, tiny_suite, tmp_path):
    name, folder = cell_task(tiny_suite), cell_tasks_folder(grid_out, suite_display_name(str(tiny_suite)))
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]  # fmt: skip
    script, arguments = tmp_path / "evaluate.py", json.dumps(model_args(tiny_suite, "loraflow", grid_out))
    script.write_text(TWO_PROCESS_SCRIPT)
    for launcher, result in ((launch, tmp_path / "two"), ([sys.executable], tmp_path / "one")):
        finished = subprocess.run([*launcher, str(script), arguments, name, str(folder), str(result)], cwd=REPOSITORY,
                                  env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                                  timeout=600)  # fmt: skip
        assert finished.returncode == 0, finished.stderr[-3000:]
    one = json.loads((tmp_path / "one.0").read_text())
    ranks = [json.loads((tmp_path / f"two.{rank}").read_text()) for rank in range(2)]
    assert [(rank["rank"], rank["world"]) for rank in ranks] == [(0, 2), (1, 2)]
    halves = [sorted(rank["evaluated"]) for rank in ranks]
    assert sorted(halves[0] + halves[1]) == sorted(one["evaluated"]) and not set(halves[0]) & set(halves[1])
    assert abs(len(halves[0]) - len(halves[1])) <= 1
    assert ranks[0]["responses"] == one["responses"] and ranks[0]["score"] == one["score"]


# (generation, gold, the cell's language): our scorer reads the generation in that language; lm-eval's is language-blind.
SCORERS_AGREE = [
    ("The answer is 42.", "42", "en"),
    ("She has 1,234 apples in total.", "1234", "en"),
    ("First 3, then 5 more, so 8 apples", "8", "en"),
    ("The temperature is -7 degrees", "-7", "en"),
    ("It weighs 2.5 kg.", "2.5", "en"),
    ("It costs $18", "18", "en"),
    ("3,5", "3.5", "en"),  # a decimal comma: we read 3.5, lm-eval drops the comma from both sides ("35" == "35")
    ("pages 3-5", "5", "en"),  # lm-eval extracts "-5" but then drops the sign; we never read a sign glued to a number
    ("12", "13", "en"),
    ("no number here", "5", "en"),
    ("Gana $276.000 al año.", "276000", "es"),  # dot thousands: we read 276000, lm-eval drops the dot
    ("Paga 1.500,75 €", "1500.75", "es"),
    ("Cuesta 3,5 €", "3.5", "es"),
    ("Mide 3.5 metros", "3.5", "es"),
    ("Ganó $2,125 en total.", "2125", "es"),
    ("Всего 15.000 рублей", "15000", "ru"),
]
# (generation, gold, language, our verdict, lm-eval's verdict): cases where the scorers legitimately differ.
SCORERS_DIFFER = [
    ("-5", "5", "en", False, True),  # lm-eval's ignore_punctuation drops the minus sign from both sides
    ("3.5", "35", "en", False, True),  # ... and the decimal point
    ("18.0", "18", "en", True, False),  # we compare numbers; lm-eval strings ("180" != "18")
    ("The answer is 3.50", "3.5", "en", True, False),  # trailing zero: "350" != "35"
    ("答案是１８", "18", "zh", True, False),  # full-width digits: lm-eval's [0-9] is ASCII only, so "[invalid]"
    ("So 7. Then...", "7", "en", True, False),  # lm-eval's [$0-9.,]{2,} takes "..." as the last number
    ("1\u00a0234", "1234", "en", True, False),  # a no-break-space thousands group (ru, fr): lm-eval takes "234"
    ("Son 70 000 dólares.", "70000", "es", True, False),  # a space thousands group (MGSM es/ru): lm-eval takes "000"
    ("Ответ: 88 000 рублей", "88000", "ru", True, False),
    ("Pesa 0.500 kg", "0.5", "es", True, False),  # "0500" != "05"
    ("1.500", "1.5", "en", True, False),  # the same in en, which reads a dot as decimal
]


def test_lm_eval_regex_filter_is_the_mgsm_flexible_extract():
    (pipeline,) = read_math_template()["filter_list"]
    assert get_filter(pipeline["filter"][0]["function"]) is RegexFilter
    assert RegexFilter(**{k: v for k, v in pipeline["filter"][0].items() if k != "function"}).group_select == -1


@pytest.mark.parametrize(("generation", "gold", "language"), SCORERS_AGREE)
def test_scorers_agree(generation, gold, language):
    assert score_math_answer(generation, gold, language) == lm_eval_says_correct(generation, gold)


@pytest.mark.parametrize(("generation", "gold", "language", "ours", "lm_eval"), SCORERS_DIFFER)
def test_scorers_differ_as_documented(generation, gold, language, ours, lm_eval):
    verdicts = (score_math_answer(generation, gold, language), lm_eval_says_correct(generation, gold))
    assert verdicts == (ours, lm_eval)


def test_math_task_yaml_needs_its_data_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        write_math_task_yaml("t", tmp_path / "missing.jsonl", tmp_path, 8, ("\n\n",))


def test_without_lm_eval_the_model_type_says_how_to_install_it():
    """lm-eval is an optional extra: the console script names it instead of showing a traceback."""
    code = "import sys; sys.modules['lm_eval'] = None; import bench.lm_eval_model"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=REPOSITORY)  # fmt: skip
    assert result.returncode == 1
    assert "pip install -e '.[lm-eval]'" in result.stderr and "Traceback" not in result.stderr
