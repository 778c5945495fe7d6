"""The paper column: each of our methods carries the LoRA-Flow paper's row of the same method, and `fusion` none."""

from __future__ import annotations

from bench.paper_numbers import PAPER_ROW_LABELS, PAPER_SCORES, paper_table

# LoRA-Flow (arXiv 2402.11455), main results table, Llama-2-7B: MGSM zh, ru, es, then HumanEval zh, ru, es
PAPERS_AVERAGE_ROW = (12.8, 10.4, 18.4, 17.1, 17.7, 18.3)
PAPERS_LORA_HUB_ROW = (20.8, 28.4, 36.8, 19.5, 21.3, 20.1)
PAPERS_LORA_FLOW_ROW = (33.2, 37.6, 42.0, 20.7, 23.8, 23.2)


def test_average_and_lorahub_carry_the_papers_average_and_lora_hub_rows():
    assert PAPER_SCORES["average"] == PAPERS_AVERAGE_ROW and PAPER_ROW_LABELS["average"].endswith("Average")
    assert PAPER_SCORES["lorahub"] == PAPERS_LORA_HUB_ROW and PAPER_ROW_LABELS["lorahub"].endswith("LoRA-Hub")
    assert PAPER_SCORES["loraflow"] == PAPERS_LORA_FLOW_ROW


def test_fusion_is_not_a_method_of_the_paper():
    assert "fusion" not in PAPER_SCORES and "fusion" not in PAPER_ROW_LABELS
    assert list(paper_table(["fusion", "lorahub"]).index) == ["lorahub"]


def test_every_paper_row_names_where_it_comes_from():
    assert set(PAPER_ROW_LABELS) == set(PAPER_SCORES)


def test_the_paper_table_lays_out_the_average_row():
    row = paper_table(["average"]).loc["average"]
    assert (row["math zh"], row["math ru"], row["math es"]) == (12.8, 10.4, 18.4)
    assert (row["code zh"], row["code ru"], row["code es"]) == (17.1, 17.7, 18.3)
    assert row["math avg"] == 13.9 and row["code avg"] == 17.7  # the paper's Avg. columns
