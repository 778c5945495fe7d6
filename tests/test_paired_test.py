"""The exact McNemar test beside the table (bench/paired_test.py), against a hand count."""

from __future__ import annotations

import math

from bench.paired_test import mcnemar_markdown, mcnemar_table, item_outcomes


def record(method: str, seed: int, verdicts: list[bool]) -> dict:
    return {"method": method, "task": "math", "language": "zh", "seed": seed,
            "generations": [{"id": f"item{i}", "correct": ok} for i, ok in enumerate(verdicts)]}  # fmt: skip


def test_discordant_pairs_and_exact_p_value_match_a_hand_count():
    flow = [record("loraflow", 0, [True] * 8 + [False] * 2), record("loraflow", 1, [True] * 7 + [False] * 3)]
    base = [record("base", 0, [False] * 9 + [True])]  # one seed: paired with both of LoRA-Flow's seeds
    table = mcnemar_table(item_outcomes(flow + base))
    assert table.loc["base", "pairs"] == 20
    assert table.loc["base", "loraflow only"] == 15 and table.loc["base", "row only"] == 2  # item9, at both seeds
    two_sided = 2 * sum(math.comb(17, k) for k in range(3)) / 2**17  # P(X <= 2) + P(X >= 15), X ~ Bin(17, 1/2)
    assert math.isclose(table.loc["base", "p (McNemar, exact)"], two_sided)
    assert math.isclose(table.loc["base", "difference (points)"], 65.0)


def test_rows_with_seeds_pair_seed_by_seed_and_no_reference_gives_no_section():
    flow = [record("loraflow", s, [True, False]) for s in (0, 1)]
    other = [record("fusion", 0, [True, True]), record("fusion", 1, [False, False])]
    table = mcnemar_table(item_outcomes(flow + other))
    assert table.loc["fusion", "pairs"] == 4 and table.loc["fusion", "loraflow only"] == 1
    assert table.loc["fusion", "row only"] == 1 and table.loc["fusion", "p (McNemar, exact)"] == 1.0
    assert mcnemar_markdown(other) == ""
