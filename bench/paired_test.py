"""Is LoRA-Flow's row separated from another row? An exact McNemar test over paired test items.

Two rows are paired item by item: the same cell (task, language), the same seed and the same test item; a row run
at one seed only (one that learns nothing and decodes greedily, so every seed gives its seed-0 cell) pairs each of
the other row's seeds with that cell. Only the discordant pairs count: `b` items LoRA-Flow solves and the other row
does not, `c` the reverse; under "no difference" b ~ Binomial(b + c, 1/2), and the two-sided exact p-value is
scipy's `binomtest`. Seeds are pooled as more pairs, so p is a statement about these items and seeds.
"""

from __future__ import annotations

import pandas as pd
from scipy.stats import binomtest

REFERENCE_ROW = "loraflow"


def item_outcomes(records: list[dict]) -> pd.DataFrame:
    """One row per scored test item: method, task, language, seed, item id, correct."""
    rows = [{"method": r["method"], "task": r["task"], "language": r["language"], "seed": r["seed"], "item": g["id"],
             "correct": bool(g["correct"])} for r in records for g in r.get("generations", [])]  # fmt: skip
    return pd.DataFrame(rows, columns=["method", "task", "language", "seed", "item", "correct"])


def paired_outcomes(items: pd.DataFrame, row: str, reference: str = REFERENCE_ROW) -> pd.DataFrame:
    """The reference row's and `row`'s verdicts on the same items (columns `reference`, `other`)."""
    ours, theirs = items[items["method"] == reference], items[items["method"] == row]
    keys = ["task", "language", "item"]
    if theirs["seed"].nunique() > 1 or ours["seed"].nunique() == 1:
        keys.append("seed")  # a row with one seed only is paired with each of the reference's seeds
    paired = ours.merge(theirs.drop(columns="seed") if "seed" not in keys else theirs, on=keys, suffixes=("", "_other"))
    return pd.DataFrame({"reference": paired["correct"], "other": paired["correct_other"]})


def mcnemar_table(items: pd.DataFrame, reference: str = REFERENCE_ROW) -> pd.DataFrame:
    """For every other row: paired items, discordant counts, the accuracy difference and the exact p-value."""
    rows = []
    for row in sorted(set(items["method"]) - {reference}):
        paired = paired_outcomes(items, row, reference)
        if paired.empty:
            continue
        wins = int((paired["reference"] & ~paired["other"]).sum())
        losses = int((~paired["reference"] & paired["other"]).sum())
        p_value = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
        rows.append({"row": row, "pairs": len(paired), f"{reference} only": wins, "row only": losses,
                     "difference (points)": 100.0 * (wins - losses) / len(paired), "p (McNemar, exact)": p_value})  # fmt: skip
    return pd.DataFrame(rows).set_index("row") if rows else pd.DataFrame()


def mcnemar_markdown(records: list[dict], reference: str = REFERENCE_ROW) -> str:
    """The test as a markdown section ('' without a reference row or another row)."""
    table = mcnemar_table(item_outcomes(records), reference)
    if table.empty:
        return ""
    table["difference (points)"] = table["difference (points)"].map(lambda value: f"{value:+.1f}")
    table["p (McNemar, exact)"] = table["p (McNemar, exact)"].map(lambda value: f"{value:.2g}")
    return (f"{reference} against every other row, paired over test items and seeds (exact McNemar test; "
            f"bench/paired_test.py):\n\n{table.to_markdown(disable_numparse=True)}\n")
