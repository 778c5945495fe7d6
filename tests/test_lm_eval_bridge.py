"""lm-eval bridge: a composed model scored by lm-evaluation-harness on a local task, and lm-eval's scorer against ours.

Where the two math scorers legitimately differ, the case is listed in `SCORERS_DIFFER` with each side's verdict, so
that a change in either scorer shows up here instead of silently moving a number.
"""

from __future__ import annotations

import json
import os

# The task data is a local JSONL: never ask the hub. Set before `datasets` is imported, which reads it once.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402
from lm_eval.api.metrics import exact_match_hf_evaluate  # noqa: E402
from lm_eval.api.registry import get_filter  # noqa: E402
from lm_eval.filters.extraction import RegexFilter  # noqa: E402

from bench.generation import generate_completions  # noqa: E402
from bench.grid import build_cell_method  # noqa: E402
from bench.lm_eval_bridge import evaluate_with_lm_eval, lm_eval_task_name, main  # noqa: E402
from bench.suites import SuiteOptions, load_suite, suite_display_name  # noqa: E402
from methods.registry import load_all_methods  # noqa: E402
from tasks.lm_eval_configs import read_math_template, write_math_task_yaml  # noqa: E402
from tasks.registry import TASKS  # noqa: E402
from tasks.scoring import score_math_answer  # noqa: E402

METRIC = "exact_match,flexible-extract"
LIMIT = 4


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


@pytest.fixture(scope="module")
def bridge_run(tiny_suite, tmp_path_factory):
    """The CLI: `average` on the tiny zh math cell, 4 documents, per-document samples kept; returns the JSON record."""
    out = tmp_path_factory.mktemp("lm_eval_out")
    cell = ["--suite", str(tiny_suite), "--method", "average", "--task", "math", "--lang", "zh", "--seed", "0"]
    assert main(cell + ["--limit", str(LIMIT), "--out", str(out), "--log-samples", "--device", "cpu"]) == 0
    (path,) = (out / "lm_eval").glob("*/average/math-zh-seed0/*.json")
    return out, json.loads(path.read_text(encoding="utf-8"))


def test_bridge_scores_a_composed_model_on_a_local_task(bridge_run, tiny_suite):
    _, record = bridge_run
    name = lm_eval_task_name(suite_display_name(str(tiny_suite)), "math", "zh")
    results = record["lm_eval"]["results"][name]
    assert 0.0 <= results[METRIC] <= 1.0
    assert record["lm_eval"]["n-samples"][name]["effective"] == LIMIT
    assert (record["method"], record["task"], record["language"], record["seed"]) == ("average", "math", "zh", 0)
    assert len(record["lm_eval"]["samples"][name]) == LIMIT


def test_lm_eval_generates_what_the_grid_generates(bridge_run, tiny_suite):
    """Same composed model, prompts, stop strings and length: HFLM's greedy text equals the grid's."""
    out, record = bridge_run
    samples = record["lm_eval"]["samples"][lm_eval_task_name(suite_display_name(str(tiny_suite)), "math", "zh")]
    suite = load_suite(str(tiny_suite), SuiteOptions(device="cpu"))
    method, _ = build_cell_method(suite, load_all_methods()["average"], None, "math", "zh", 0, out, force=False)
    test = suite.cells[("math", "zh")].test[:LIMIT]
    prompts = [example.prompt for example in test]
    max_new_tokens, stop = suite.max_new_tokens["math"], TASKS["math"].stop
    ours = generate_completions(method.model, suite.tokenizer, prompts, max_new_tokens, stop)
    by_doc = {sample["doc_id"]: sample for sample in samples}
    assert [by_doc[index]["arguments"][0][0] for index in range(LIMIT)] == prompts
    assert [by_doc[index]["resps"][0][0] for index in range(LIMIT)] == ours


def test_per_document_verdicts_agree(bridge_run, tiny_suite):
    """On the run's own generations: lm-eval's recorded exact_match, our offline replay of it, and our scorer."""
    _, record = bridge_run
    for sample in record["lm_eval"]["samples"][lm_eval_task_name(suite_display_name(str(tiny_suite)), "math", "zh")]:
        generation, gold = sample["resps"][0][0], sample["doc"]["answer"]
        assert bool(sample["exact_match"]) == lm_eval_says_correct(generation, gold), generation
        assert score_math_answer(generation, gold, "zh") == bool(sample["exact_match"]), generation


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


def test_unknown_lm_eval_task_is_named(tiny_model, tiny_tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"--lm-eval-tasks: unknown lm-eval task\(s\) \['no_such_task'\]"):
        evaluate_with_lm_eval(tiny_model, tiny_tokenizer, ["no_such_task"], tmp_path, 1, 0, include_defaults=False)


def test_math_task_yaml_needs_its_data_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        write_math_task_yaml("t", tmp_path / "missing.jsonl", tmp_path, 8, ("\n\n",))
