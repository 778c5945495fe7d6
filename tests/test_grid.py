"""End to end on a tiny random suite: grid, cell files, resume, report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.cli import main
from bench.grid import cell_path
from bench.report import read_cells, summary_table, write_report

STATIC_METHODS = "base,lora,average"


def run(tiny_suite, out, *extra):
    return main(["--suite", str(tiny_suite), "--methods", STATIC_METHODS, "--tasks", "math", "--langs", "zh,es",
                 "--out", str(out), "--device", "cpu", *extra])  # fmt: skip


def test_grid_writes_cells_and_tables(tiny_suite, tmp_path):
    out = tmp_path / "results"
    assert run(tiny_suite, out) == 0
    cells = read_cells(out)
    assert sorted(cells["method"].unique()) == ["average", "base", "language_lora", "skill_lora"]
    assert len(cells) == 8 and set(cells["n"]) == {6}
    record = json.loads(cell_path(out, tiny_suite.name, "average", "math", "zh", 0).read_text())
    assert record["metric"] == "accuracy" and len(record["generations"]) == 6
    assert set(record["adapters"]) == {"zh", "math"} and all(len(h) == 64 for h in record["adapters"].values())
    table = (out / "table.md").read_text()
    assert "math zh" in table and "skill_lora" in table
    assert (out / "table.tex").read_text().count("\\\\") >= 5
    csv = pd.read_csv(out / "results.csv")
    assert {"method", "suite", "task", "language", "seed", "metric", "score", "n"} <= set(csv.columns)


def test_rerun_skips_finished_cells_and_resumes_missing_ones(tiny_suite, tmp_path):
    out = tmp_path / "results"
    assert run(tiny_suite, out) == 0
    finished = cell_path(out, tiny_suite.name, "base", "math", "zh", 0)
    lost = cell_path(out, tiny_suite.name, "average", "math", "es", 0)
    mtime = finished.stat().st_mtime_ns
    lost.unlink()
    lost.with_name(f".{lost.name}.123.tmp").write_text('{"half": ')  # what a killed writer leaves behind
    assert run(tiny_suite, out) == 0
    assert finished.stat().st_mtime_ns == mtime
    assert json.loads(lost.read_text())["method"] == "average"
    assert len(read_cells(out)) == 8
    assert run(tiny_suite, out, "--force") == 0
    assert finished.stat().st_mtime_ns != mtime


def test_changed_options_do_not_silently_reuse_cells(tiny_suite, tmp_path, capsys):
    out = tmp_path / "results"
    assert run(tiny_suite, out, "--limit", "3") == 0
    assert run(tiny_suite, out, "--limit", "4") == 2
    assert "--force" in capsys.readouterr().err


def test_generation_batch_size_option_is_used_and_recorded(tiny_suite, tmp_path):
    default, small = tmp_path / "default", tmp_path / "small"
    assert run(tiny_suite, default, "--methods", "base") == 0 and run(tiny_suite, small, "--methods", "base", "--batch-size", "2") == 0
    records = [json.loads(cell_path(out, tiny_suite.name, "base", "math", "zh", 0).read_text()) for out in (default, small)]
    assert records[1]["generation_batch_size"] == 2 and records[0]["generation_batch_size"] != 2
    assert [g["id"] for g in records[0]["generations"]] == [g["id"] for g in records[1]["generations"]]


def test_static_average_weights_from_command_line(tiny_suite, tmp_path):
    out = tmp_path / "results"
    assert run(tiny_suite, out, "--set", "average.weights=1:0") == 0
    cells = {name: json.loads(cell_path(out, tiny_suite.name, name, "math", "zh", 0).read_text()) for name in ("average", "language_lora")}
    assert cells["average"]["config"]["weights"] == [1.0, 0.0]
    completions = [[g["completion"] for g in cells[name]["generations"]] for name in cells]
    assert completions[0] == completions[1]


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--methods", "nope"], "unknown method 'nope'"),
        (["--langs", "xx"], "--langs: unknown name 'xx'"),
        (["--tasks", "poetry"], "--tasks: unknown name 'poetry'"),
        (["--suite", "missing_suite"], "--suite: unknown suite"),
        (["--limit", "0"], "--limit 0"),
        (["--batch-size", "0"], "--batch-size 0"),
        (["--seeds", "a"], "--seeds a"),
        (["--set", "average.nope=1"], "unknown option"),
    ],
)
def test_bad_options_fail_at_once_naming_the_option(arguments, message, tmp_path, capsys):
    base = ["--methods", "average", "--out", str(tmp_path / "r")]
    assert main(base + arguments) == 2
    assert message in capsys.readouterr().err


def test_report_mean_and_ci_over_seeds():
    cells = pd.DataFrame(
        [{"method": m, "suite": "s", "task": "math", "language": "zh", "seed": s, "metric": "accuracy", "score": v, "n": 10}
         for m, values in {"base": [0, 10], "skill_lora": [20, 20], "oracle": [60, 80]}.items() for s, v in enumerate(values)]
    )  # fmt: skip
    summary = summary_table(cells)
    assert summary.loc["base", "math zh"] == 5 and summary.loc["skill_lora", "math zh ±"] == 0
    assert summary.loc["base", "math zh ±"] == pytest.approx(12.706 * 7.0710678 / 1.4142136, rel=1e-4)
    assert summary.loc["oracle", "gap closed"] == 1 and summary.loc["skill_lora", "gap closed"] == 0


def test_second_run_into_the_same_folder_is_refused(tiny_suite, tmp_path, capsys):
    from bench.storage import exclusive_lock

    out = tmp_path / "results"
    with exclusive_lock(out):
        assert run(tiny_suite, out) == 2
    assert "another run is writing into this folder" in capsys.readouterr().err
    assert run(tiny_suite, out) == 0


def test_report_prints_the_papers_numbers_beside_suites_on_the_papers_cells(tmp_path):
    for suite in ("real", "builtin"):
        for method, score in (("loraflow", 30.0), ("oracle", 50.0)):
            path = tmp_path / "cells" / suite / method / "math-zh-seed0.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            record = {"method": method, "suite": suite, "task": "math", "language": "zh", "seed": 0, "metric": "accuracy",
                      "score": score, "n": 20}  # fmt: skip
            path.write_text(json.dumps(record))
    text = write_report(tmp_path)["markdown"].read_text()
    real, builtin = text.split("## suite: real")[1], text.split("## suite: real")[0]
    assert "The paper's numbers for these rows" in real and "The paper's numbers" not in builtin
    paper_rows = real.split("The paper's numbers for these rows")[1]
    assert "| loraflow |      33.2 |      37.6 |        42 |       37.6 |" in paper_rows and "oracle" not in paper_rows
    # on the paper's cells, columns carry the paper's benchmark names
    assert "|   MGSM zh |" in real and "MGSM avg" in paper_rows and "math zh" not in real and "math zh" in builtin
