"""End to end on a tiny random suite: grid, cell files, resume, report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from bench.cli import main
from bench.grid import Verdicts, cell_path
from bench.report import read_cells, summary_table, write_report
from tasks.examples import Example
from tasks.registry import TASKS, TaskSpec

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
    cost = (out / "cost.md").read_text()
    assert all(f"| {tiny_suite.name} | {row} " in cost for row in ("base", "average", "skill_lora"))
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


def test_changed_options_recompute_cells_and_keep_the_old_files(tiny_suite, tmp_path, caplog):
    out = tmp_path / "results"
    assert run(tiny_suite, out, "--limit", "3") == 0
    assert run(tiny_suite, out, "--limit", "4") == 0
    assert set(read_cells(out)["n"]) == {4}
    path = cell_path(out, tiny_suite.name, "base", "math", "zh", 0)
    assert json.loads(path.with_name(path.name + ".replaced-1").read_text())["n"] == 3
    assert f"recomputing {path} (limit changed)" in caplog.text


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


def error_lines(captured) -> list[str]:
    return [line for line in captured.err.splitlines() if line.startswith("error: ")]


def test_repeated_names_and_seeds_run_once_with_a_note(caplog):
    from bench.cli import build_parser, spec_from_arguments

    arguments = build_parser().parse_args(["--methods", "base,lora,language_lora,base", "--tasks", "math,math",
                                           "--langs", "zh,es,zh", "--seeds", "1,0,1"])  # fmt: skip
    with caplog.at_level("WARNING"):
        spec = spec_from_arguments(arguments)
    assert spec.methods == ["base", "language_lora", "skill_lora"] and spec.tasks == ["math"]
    assert spec.languages == ["zh", "es"] and spec.seeds == [1, 0]
    notes = [record.getMessage() for record in caplog.records]
    expected = ("--methods: language_lora, base given", "--tasks: math given", "--langs: zh given", "--seeds: 1 given")
    for note in expected:
        assert any(message.startswith(note) for message in notes), (note, notes)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--methods", "base", "--langs", "zh,ru"], "has no cell math/ru"),  # the first cell exists, the second not
        (["--methods", "base,average", "--set", "average.weights=1:0:0"], "got 3 weights for 2 adapters"),
        (["--methods", "base,ties", "--set", "ties.weights=1:1", "--set", "ties.weight_search=lorahub"], "not both"),
    ],
)
def test_the_whole_grid_is_checked_before_any_cell_runs(tiny_suite, tmp_path, capsys, arguments, message):
    out = tmp_path / "results"
    assert run(tiny_suite, out, *arguments) == 2
    errors = error_lines(capsys.readouterr())
    assert len(errors) == 1 and message in errors[0], errors
    assert not list(out.rglob("*.json"))  # no cell was computed


def test_a_method_that_refuses_its_cells_does_not_stop_the_grid(tiny_suite, tmp_path, capsys):
    out = tmp_path / "results"
    assert run(tiny_suite, out, "--methods", "base,oracle,average") == 2  # the tiny suite has no composite data
    captured = capsys.readouterr()
    reason = "oracle: the suite has no composite training data for math/"
    assert error_lines(captured) == [f"error: oracle on math-{lang}-seed0 refused: {reason}{lang}" for lang in ("zh", "es")]
    assert sorted(read_cells(out)["method"]) == ["average", "average", "base", "base"]
    assert "| average " in (out / "table.md").read_text() and "| average " in captured.out  # the report still written


def test_a_cell_refused_with_new_options_takes_the_old_cell_out_of_the_table(tiny_suite, tmp_path, monkeypatch):
    """The old cell was made with other options: after the new ones are refused, the table must not show it."""
    import methods.average

    def refuse(self, cell, config=None):
        raise ValueError("these weights are refused")

    out, average = tmp_path / "results", ["--methods", "average,base", "--langs", "zh"]
    assert run(tiny_suite, out, *average) == 0
    with monkeypatch.context() as patch:
        patch.setattr(methods.average.Average, "__init__", refuse)
        assert run(tiny_suite, out, *average, "--set", "average.weights=0.3:0.7") == 2
    assert list(read_cells(out)["method"]) == ["base"] and "| average " not in (out / "table.md").read_text()
    (kept,) = (out / "cells").rglob("math-zh-seed0.json.replaced-1")
    assert kept.parent.name == "average"  # not lost: set aside beside the cell
    assert run(tiny_suite, out, *average) == 0
    monkeypatch.setattr(methods.average.Average, "__init__", refuse)
    assert run(tiny_suite, out, *average, "--force") == 2  # refused again, but the cell is of these very inputs
    assert sorted(read_cells(out)["method"]) == ["average", "base"]


def test_an_unexpected_error_in_a_cell_is_reported_at_the_end(tiny_suite, tmp_path, capsys, monkeypatch):
    import methods.average

    def broken(self, cell, config=None):
        raise IndexError("index 7 is out of bounds")

    monkeypatch.setattr(methods.average.Average, "__init__", broken)
    out = tmp_path / "results"
    assert run(tiny_suite, out, "--methods", "average,base", "--langs", "zh") == 2
    captured = capsys.readouterr()
    assert error_lines(captured) == ["error: average on math-zh-seed0 failed with an unexpected IndexError: index 7 is "
                                     "out of bounds (rerun with --debug for the traceback)"]  # fmt: skip
    assert "Traceback" not in captured.err and list(read_cells(out)["method"]) == ["base"]
    assert run(tiny_suite, out, "--methods", "average", "--langs", "zh", "--debug") == 2
    assert 'raise IndexError("index 7 is out of bounds")' in capsys.readouterr().err


def test_an_unexpected_error_outside_a_cell_is_one_error_line(tiny_suite, tmp_path, capsys, monkeypatch):
    import bench.grid

    def broken_loader(*arguments):
        raise IndexError("index out of range in self")

    monkeypatch.setattr(bench.grid, "load_suite", broken_loader)
    assert run(tiny_suite, tmp_path / "results") == 2
    captured = capsys.readouterr()
    assert error_lines(captured) == ["error: unexpected IndexError: index out of range in self (rerun with --debug for "
                                     "the traceback)"]  # fmt: skip
    assert "Traceback" not in captured.err
    assert run(tiny_suite, tmp_path / "results", "--debug") == 2
    assert "Traceback" in capsys.readouterr().err


def test_an_interrupt_stops_at_once_and_keeps_finished_cells(tiny_suite, tmp_path, capsys, monkeypatch):
    import bench.grid

    calls = []

    def interrupted_second_cell(*arguments):
        calls.append(arguments)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return run_cell(*arguments)

    run_cell = bench.grid.run_cell
    monkeypatch.setattr(bench.grid, "run_cell", interrupted_second_cell)
    out = tmp_path / "results"
    assert run(tiny_suite, out) == 130
    assert len(calls) == 2 and "interrupted" in capsys.readouterr().err
    assert list(read_cells(out)["method"]) == ["base"]
    monkeypatch.undo()
    assert run(tiny_suite, out) == 0 and len(read_cells(out)) == 8  # the rerun resumes


def test_report_mean_and_ci_over_seeds():
    cells = pd.DataFrame(
        [{"method": m, "suite": "s", "task": "math", "language": "zh", "seed": s, "metric": "accuracy", "score": v, "n": 10}
         for m, values in {"base": [0, 10], "skill_lora": [20, 20], "oracle": [60, 80]}.items() for s, v in enumerate(values)]
    )  # fmt: skip
    summary = summary_table(cells)
    assert summary.loc["base", "math zh"] == 5 and summary.loc["skill_lora", "math zh ±"] == 0
    assert summary.loc["base", "math zh ±"] == pytest.approx(12.706 * 7.0710678 / 1.4142136, rel=1e-4)
    assert summary.loc["oracle", "gap closed"] == 1 and summary.loc["skill_lora", "gap closed"] == 0


def test_report_adds_each_seeds_own_table_while_several_seeds_are_reported(tmp_path):
    def write(method, seed, score):
        path = tmp_path / "cells" / "builtin" / method / f"math-zh-seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"method": method, "suite": "builtin", "task": "math", "language": "zh",
                                    "seed": seed, "metric": "accuracy", "score": score, "n": 20}))  # fmt: skip

    write("base", 0, 10.0)
    write("loraflow", 0, 30.0)
    assert "seed 0 only" not in write_report(tmp_path)["markdown"].read_text()  # one seed: the table is that seed's
    write("loraflow", 1, 50.0)
    text = write_report(tmp_path)["markdown"].read_text()
    overall, seed0 = text.split("### builtin, the cells of seed 0 only")
    seed0, seed1 = seed0.split("### builtin, the cells of seed 1 only")
    assert "40.0 ±" in overall and "|      30.0 |" in seed0 and "|      10.0 |" in seed0
    assert "|      50.0 |" in seed1 and "base" not in seed1  # a row not run at seed 1 is absent there


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


def test_a_completion_already_scored_for_an_example_is_not_run_again(monkeypatch):
    scored = []

    def score(example, completion, language="en"):
        scored.append((example.id, completion, language))
        return completion == example.target

    monkeypatch.setitem(TASKS, "counted", TaskSpec("counted", "accuracy", score, max_new_tokens=8, stop=()))
    one, two = Example("one", "1 + 1 =", " 2"), Example("two", "2 + 2 =", " 4")
    verdicts = Verdicts()
    assert verdicts.score("counted", "zh", [one, two], [" 2", " 5"]) == [True, False]
    assert verdicts.score("counted", "zh", [two, one, two], [" 5", " 2", " 4"]) == [False, True, True]
    assert verdicts.score("counted", "es", [one], [" 2"]) == [True]  # another language is another scorer
    assert sorted(scored) == sorted([("one", " 2", "zh"), ("two", " 5", "zh"), ("two", " 4", "zh"), ("one", " 2", "es")])
    monkeypatch.setitem(TASKS, "counted", TaskSpec("counted", "accuracy", score, 8, (), scorer_version="2"))
    assert verdicts.score("counted", "zh", [one], [" 2"]) == [True]  # a new scorer version scores again
    assert len(scored) == 5
