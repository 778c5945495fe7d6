"""The LoRA-Flow paper's own numbers (Llama-2-7B; main results table: MGSM accuracy and HumanEval pass@1 in zh, ru,
es), keyed by our method names, so the report can print them beside ours for suites on the paper's test sets.

The paper's table has the rows Base, Single LoRA (language; task) and, under the heading "LoRA Fusion", Average,
LoRA-Hub and LoRA-Flow; `PAPER_ROW_LABELS` names the row each of our methods takes its numbers from. "LoRA Fusion"
is the paper's heading over the three fusion rows, not a method. Our `fusion` (task-level weights trained by gradient
descent, methods/fusion.py) is this project's own baseline between LoraHub and LoRA-Flow, so it has no paper row.
"""

from __future__ import annotations

import pandas as pd

SOURCE = "LoRA-Flow (Wang et al., ACL 2024), main results table, Llama-2-7B"
SUITES_ON_THE_PAPERS_CELLS = ("real", "paper")  # suites whose test sets are the paper's (MGSM, translated HumanEval)
LANGUAGES = ("zh", "ru", "es")
BENCHMARK_NAMES = {"math": "MGSM", "code": "HumanEval"}  # what the paper calls our tasks' test sets
# our method -> the paper's row label (main results table, top to bottom)
PAPER_ROW_LABELS = {
    "base": "Base",
    "language_lora": "Single LoRA (language)",
    "skill_lora": "Single LoRA (task)",
    "average": "LoRA Fusion: Average",
    "lorahub": "LoRA Fusion: LoRA-Hub",
    "loraflow": "LoRA Fusion: LoRA-Flow",
}
# our method: the paper's row (MGSM zh, ru, es, HumanEval zh, ru, es)
PAPER_SCORES = {
    "base": (4.4, 3.2, 2.4, 0.0, 0.0, 2.4),
    "language_lora": (5.2, 3.6, 3.6, 12.2, 14.0, 10.4),
    "skill_lora": (26.8, 32.8, 41.2, 18.3, 23.2, 21.9),
    "average": (12.8, 10.4, 18.4, 17.1, 17.7, 18.3),
    "lorahub": (20.8, 28.4, 36.8, 19.5, 21.3, 20.1),
    "loraflow": (33.2, 37.6, 42.0, 20.7, 23.8, 23.2),
}


def paper_table(methods: list[str]) -> pd.DataFrame:
    """The paper's rows for `methods` (those it reports), in the report's column layout and order."""
    rows = {}
    for method in (name for name in methods if name in PAPER_SCORES):
        scores = PAPER_SCORES[method]
        row = {f"math {language}": score for language, score in zip(LANGUAGES, scores[:3])}
        row["math avg"] = sum(scores[:3]) / 3
        row |= {f"code {language}": score for language, score in zip(LANGUAGES, scores[3:])}
        row["code avg"] = sum(scores[3:]) / 3
        row["avg"] = sum(scores) / 6
        rows[method] = row
    table = pd.DataFrame.from_dict(rows, orient="index").round(1)
    table.index.name = "method"
    return table


def with_benchmark_names(table: pd.DataFrame) -> pd.DataFrame:
    """The report's columns named as the paper names its cells: 'math zh' -> 'MGSM zh', 'code avg' -> 'HumanEval avg'."""
    def rename(column: str) -> str:
        task, _, rest = column.partition(" ")
        return f"{BENCHMARK_NAMES[task]} {rest}" if task in BENCHMARK_NAMES and rest else column

    return table.rename(columns=rename)
