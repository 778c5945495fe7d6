"""Tables from cell files alone (no model needed): results.csv, table.md, table.tex and cost.md (seconds per cell).

The table has the LoRA-Flow main-table layout: one row per method; one column per (task, language) cell, then the
per-task averages and the overall average; mean over seeds, with the half-width of a 95% t-interval when there are
several. `gap closed` = (method - best single adapter) / (oracle - best single adapter), on the overall average;
`ceiling gap closed` the same with the `loraflow_ceiling` row (gates trained on plentiful composite data) in place of
the oracle: the share of what output-level fusion of these adapters can reach.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pandas as pd

from bench.cell_identity import changed_inputs
from bench.storage import write_text_atomic

from bench.paired_test import mcnemar_markdown
from bench.paper_numbers import SOURCE as PAPER_SOURCE
from bench.paper_numbers import SUITES_ON_THE_PAPERS_CELLS, paper_table, with_benchmark_names
from tasks.registry import ALL_LANGUAGES

log = logging.getLogger(__name__)
PER_ROW_FIELDS = ("method", "options", "seed")  # identity fields that may differ between the cells of one table
CSV_COLUMNS = ["method", "suite", "task", "language", "seed", "metric", "score", "n"]
METHOD_ORDER = [
    "base", "language_lora", "skill_lora", "skill_lora_finetuned", "fresh_lora", "average", "linear", "cat", "svd", "ties", "dare_ties", "dare_linear",
    "lorahub", "fusion", "xlora", "loraflow", "hydralora", "hydralora_tuned", "loraflow_ceiling", "oracle",
]  # fmt: skip
TASK_ORDER = ["math", "code"]
SINGLE_ADAPTER_ROWS = ("language_lora", "skill_lora")
GAP_COLUMNS = {"gap closed": "oracle", "ceiling gap closed": "loraflow_ceiling"}  # column -> the row bounding it
# Two-sided 95% Student-t quantiles for 1..10 degrees of freedom; beyond that 1.96 is close enough.
T_QUANTILES = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228]


def read_cell_records(out: Path) -> dict[Path, dict]:
    """Every cell file under `out/cells` by path; JSON files that are not cell records are skipped and named."""
    records, foreign = {}, []
    for path in sorted((Path(out) / "cells").glob("*/*/*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: not a readable cell file ({error}); delete it and rerun its grid") from None
        if isinstance(record, dict) and all(column in record for column in CSV_COLUMNS):
            records[path] = record
        else:
            foreign.append(path)
    if foreign:
        log.warning("skipping %d file(s) under %s that are not cell files: %s", len(foreign), Path(out) / "cells",
                    ", ".join(str(path) for path in foreign))  # fmt: skip
    return records


def read_cells(out: Path) -> pd.DataFrame:
    """One row per cell file under `out/cells`, with the CSV columns."""
    rows = [{column: record[column] for column in CSV_COLUMNS} for record in read_cell_records(out).values()]
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def check_same_inputs(records: dict[Path, dict]) -> None:
    """Refuse a table whose cells of one (suite, task, language) were computed from different inputs (data, base
    model, adapters, generation settings, scorer, --limit; bench/cell_identity.py); methods and seeds may differ."""
    first_of: dict[tuple, tuple[Path, dict | None]] = {}
    for path, record in records.items():
        identity = record.get("identity")
        inputs = {k: v for k, v in identity.items() if k not in PER_ROW_FIELDS} if isinstance(identity, dict) else None
        group = (record["suite"], record["task"], record["language"])
        first_path, first_inputs = first_of.setdefault(group, (path, inputs))
        if inputs != first_inputs:
            changed = changed_inputs(first_inputs, inputs or {}) if first_inputs is not None else ["(no identity recorded)"]
            raise ValueError(f"{path} and {first_path}: cells of {'/'.join(group)} from different inputs "
                             f"({', '.join(changed)} differ); rerun the grid so that they match, or report them "
                             "from separate --out folders")  # fmt: skip


def confidence_half_width(scores: pd.Series) -> float:
    """Half-width of the 95% t-interval of the mean (0 for a single seed)."""
    count = len(scores)
    if count < 2:
        return 0.0
    quantile = T_QUANTILES[count - 2] if count - 2 < len(T_QUANTILES) else 1.96
    return quantile * float(scores.std(ddof=1)) / math.sqrt(count)


def _ordered(values, order) -> list:
    known = [value for value in order if value in set(values)]
    return known + sorted(set(values) - set(known))


def summary_table(cells: pd.DataFrame) -> pd.DataFrame:
    """Rows: methods; columns: '<task> <lang>' cells, '<task> avg', 'avg' (means over seeds) and their CI columns."""
    table = {}
    per_seed = cells.pivot_table(index=["method", "seed"], columns=["task", "language"], values="score")
    tasks = _ordered(cells["task"], TASK_ORDER)
    for task in tasks:
        languages = _ordered([language for (t, language) in per_seed.columns if t == task], ALL_LANGUAGES)
        for language in languages:
            column = per_seed[(task, language)]
            table[f"{task} {language}"] = column.groupby("method").mean()
            table[f"{task} {language} ±"] = column.groupby("method").agg(confidence_half_width)
        task_average = per_seed[task].mean(axis=1, skipna=False)
        table[f"{task} avg"] = task_average.groupby("method").mean()
        table[f"{task} avg ±"] = task_average.groupby("method").agg(confidence_half_width)
    overall = per_seed.mean(axis=1, skipna=False)
    table["avg"] = overall.groupby("method").mean()
    table["avg ±"] = overall.groupby("method").agg(confidence_half_width)
    summary = pd.DataFrame(table)
    summary = summary.loc[_ordered(summary.index, METHOD_ORDER)]
    for column, upper_row in GAP_COLUMNS.items():
        summary[column] = gap_closed(summary["avg"], upper_row)
    return summary


def gap_closed(averages: pd.Series, upper_row: str = "oracle") -> pd.Series:
    """(method - best single adapter) / (upper row - best single adapter); NaN without those rows."""
    singles = [averages[name] for name in SINGLE_ADAPTER_ROWS if name in averages.index]
    if upper_row not in averages.index or not singles:
        return pd.Series(math.nan, index=averages.index)
    best_single = max(singles)
    room = averages[upper_row] - best_single
    return (averages - best_single) / room if room > 0 else pd.Series(math.nan, index=averages.index)


def _format_cell(mean: float, half_width: float, with_ci: bool) -> str:
    if pd.isna(mean):
        return "-"
    return f"{mean:.1f} ± {half_width:.1f}" if with_ci else f"{mean:.1f}"


def display_table(summary: pd.DataFrame, with_ci: bool) -> pd.DataFrame:
    """Score columns as text ('12.3' or '12.3 ± 1.0'), plus the gap-closed shares (shown where their row exists)."""
    columns = [column for column in summary.columns if not column.endswith("±") and column not in GAP_COLUMNS]
    shown = pd.DataFrame(index=summary.index)
    for column in columns:
        shown[column] = [
            _format_cell(mean, half, with_ci) for mean, half in zip(summary[column], summary[f"{column} ±"])
        ]
    for column, upper_row in GAP_COLUMNS.items():
        if column == "gap closed" or upper_row in summary.index:
            shown[column] = ["-" if pd.isna(value) else f"{value:.2f}" for value in summary[column]]
    shown.index.name = "method"
    return shown


def cost_table(records: list[dict]) -> pd.DataFrame:
    """Seconds a cell took per row (mean over its cells and seeds): fit, generate, score, and the cell count."""
    rows = [{"suite": r["suite"], "method": r["method"], **{step: r.get("timings", {}).get(step, math.nan)
             for step in ("fit", "generate", "score")}} for r in records]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["suite", "method", "fit", "generate", "score"])
    table = frame.groupby(["suite", "method"]).agg(cells=("fit", "size"), fit=("fit", "mean"),
                                                   generate=("generate", "mean"), score=("score", "mean"))  # fmt: skip
    table["total"] = table[["fit", "generate", "score"]].sum(axis=1)
    return table.round(1).reset_index()


def suite_table(suite: str, cells: pd.DataFrame, with_ci: bool) -> pd.DataFrame:
    """The displayed table of one suite's cells (benchmark names on the paper's cells)."""
    shown = display_table(summary_table(cells), with_ci)
    return with_benchmark_names(shown) if suite in SUITES_ON_THE_PAPERS_CELLS else shown


def table_markdown(shown: pd.DataFrame) -> str:
    # the cells are already text ('12.3', '-'): printed as they are, right-aligned, not re-parsed as numbers
    return shown.to_markdown(disable_numparse=True, colalign=("left",) + ("right",) * len(shown.columns))


def write_report(out: Path) -> dict[str, Path]:
    """Write results.csv, table.md and table.tex under `out`; return their paths."""
    out = Path(out)
    records = read_cell_records(out)
    check_same_inputs(records)
    cells = pd.DataFrame([{column: record[column] for column in CSV_COLUMNS} for record in records.values()],
                         columns=CSV_COLUMNS)  # fmt: skip
    if cells.empty:
        raise ValueError(f"{out / 'cells'}: no finished cells to report")
    cells = cells.sort_values(["suite", "method", "task", "language", "seed"]).reset_index(drop=True)
    paths = {"csv": out / "results.csv", "markdown": out / "table.md", "latex": out / "table.tex", "cost": out / "cost.md"}
    write_text_atomic(paths["csv"], cells.to_csv(index=False, float_format="%.2f"))
    sections_md, sections_tex = [], []
    for suite, suite_cells in cells.groupby("suite"):
        with_ci = suite_cells.groupby(["method", "task", "language"]).size().max() > 1
        shown = suite_table(suite, suite_cells, with_ci)
        sections_md.append(f"## suite: {suite}\n\n{table_markdown(shown)}\n")
        if suite in SUITES_ON_THE_PAPERS_CELLS and not (paper := paper_table(list(shown.index))).empty:
            paper = with_benchmark_names(paper)
            sections_md.append(f"The paper's numbers for these rows ({PAPER_SOURCE}):\n\n{paper.to_markdown()}\n")
        suite_records = [record for record in records.values() if record["suite"] == suite]
        if paired := mcnemar_markdown(suite_records):
            sections_md.append(paired)
        seeds = sorted(suite_cells["seed"].unique())
        for seed in seeds if len(seeds) > 1 else ():  # while seeds are incomplete, each seed's own table and tests
            seed_table = suite_table(suite, suite_cells[suite_cells["seed"] == seed], with_ci=False)
            sections_md.append(f"### {suite}, the cells of seed {seed} only\n\n{table_markdown(seed_table)}\n")
            if paired := mcnemar_markdown([record for record in suite_records if record["seed"] == seed]):
                sections_md.append(paired)
        latex = shown.to_latex(escape=True).replace(" ± ", " $\\pm$ ")
        sections_tex.append(f"% suite: {suite}\n{latex}")
    write_text_atomic(paths["markdown"], "\n".join(sections_md))
    write_text_atomic(paths["latex"], "\n".join(sections_tex))
    cost = cost_table(list(records.values())).to_markdown(index=False)
    write_text_atomic(paths["cost"], f"Seconds per cell (mean over the cells and seeds computed):\n\n{cost}\n")
    return paths
