"""The built-in suite's data generator: determinism, disjoint pools, correct references, clean general text."""

from __future__ import annotations

import copy
import re

import pytest

from tasks.builtin import code_examples, general_text, math_examples, parallel_pairs
from tasks.builtin.code_families import FAMILIES, FAMILIES_BY_ID
from tasks.builtin.code_problems import body_source, code_cases, reference_function
from tasks.builtin.corpora import PARALLEL_LANGUAGES, behaviour_lines, number_copy_lines, statement_pairs
from tasks.builtin.languages import LEXICONS, NAME_COUNT
from tasks.builtin.math_problems import SUM_LIMIT, arithmetic_facts, clause_slots
from tasks.builtin.pools import LANGUAGES, POOLS

SIZES = {
    "math": {"train": 200, "dev": 50, "test": 250, "adapter": 2000},
    "code": {"train": 200, "dev": 50, "test": 150, "adapter": 2000},
}
GENERATORS = {"math": math_examples, "code": code_examples}
CJK = re.compile(r"[\u4e00-\u9fff]")
CYRILLIC = re.compile(r"[\u0400-\u04ff]")
EQUATION = re.compile(r"^(\d+) ([-+*/]) (\d+) = (\d+)\.$")


def problem_digest(example_id: str) -> str:
    return example_id.rsplit("-", 1)[1]


def passes(prompt: str, body: str, test: str, entry_point: str) -> bool:
    """Run our own reference code in-process (trusted: model output never goes through this test helper)."""
    namespace: dict = {}
    try:
        exec(prompt + body + "\n" + test, namespace)
        namespace["check"](namespace[entry_point])
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def all_examples():
    """Every task, language and pool at the sizes the harness uses."""
    return {
        (task, language, pool): GENERATORS[task](language, pool, size, seed=0)
        for task, sizes in SIZES.items()
        for language in LANGUAGES
        for pool, size in sizes.items()
    }


@pytest.mark.parametrize("task", ["math", "code"])
def test_sizes_and_unique_ids(all_examples, task):
    for language in LANGUAGES:
        for pool, size in SIZES[task].items():
            examples = all_examples[(task, language, pool)]
            assert len(examples) == size
            assert len({example.id for example in examples}) == size
            assert len({example.prompt for example in examples}) == size


@pytest.mark.parametrize("task", ["math", "code"])
def test_same_seed_same_data_other_seed_other_data(task):
    generate = GENERATORS[task]
    assert generate("ru", "dev", 30, seed=3) == generate("ru", "dev", 30, seed=3)
    other = generate("ru", "dev", 30, seed=4)
    assert {e.prompt for e in other}.isdisjoint({e.prompt for e in generate("ru", "dev", 30, seed=3)})
    assert general_text("zh", 20, seed=1) == general_text("zh", 20, seed=1)
    assert general_text("zh", 20, seed=1) != general_text("zh", 20, seed=2)
    assert parallel_pairs("es", 20, seed=1) == parallel_pairs("es", 20, seed=1)
    assert parallel_pairs("es", 20, seed=1) != parallel_pairs("es", 20, seed=2)


@pytest.mark.parametrize("task", ["math", "code"])
def test_pools_disjoint_by_problem_and_prompt_across_languages(all_examples, task):
    digests = {pool: set() for pool in POOLS}
    prompts = {pool: set() for pool in POOLS}
    for (name, _, pool), examples in all_examples.items():
        if name == task:
            digests[pool] |= {problem_digest(example.id) for example in examples}
            prompts[pool] |= {example.prompt for example in examples}
    for index, pool in enumerate(POOLS):
        for other in POOLS[index + 1 :]:
            assert digests[pool].isdisjoint(digests[other]), (pool, other)
            assert prompts[pool].isdisjoint(prompts[other]), (pool, other)
    # A different seed draws other problems, but never from another pool.
    reseeded = {problem_digest(e.id) for e in GENERATORS[task]("es", "test", 100, seed=9)}
    assert reseeded.isdisjoint(digests["train"] | digests["dev"] | digests["adapter"])


@pytest.mark.parametrize("task", ["math", "code"])
def test_same_problems_translated_in_every_language(all_examples, task):
    ids = {language: [problem_digest(e.id) for e in all_examples[(task, language, "test")]] for language in LANGUAGES}
    assert ids["zh"] == ids["ru"] == ids["es"] == ids["en"]
    assert all(CJK.search(e.prompt) for e in all_examples[(task, "zh", "test")])
    assert all(CYRILLIC.search(e.prompt) for e in all_examples[(task, "ru", "test")])


def test_math_answers_follow_from_their_worked_solutions(all_examples):
    for (task, _, _), examples in all_examples.items():
        if task != "math":
            continue
        for example in examples:
            assert example.prompt.startswith("Question: ") and example.prompt.endswith("\nAnswer:")
            assert example.target.startswith(" ")
            steps, final = example.target[1:].split(" #### ")
            previous = None
            for step in re.split(r"(?<=\.) ", steps):
                left, sign, right, result = EQUATION.match(step).groups()
                left, right, result = int(left), int(right), int(result)
                expected = {"+": left + right, "-": left - right, "*": left * right}.get(sign)
                if sign == "/":
                    assert left % right == 0
                    expected = left // right
                assert result == expected and result > 0
                for operand in ([left] if previous is None else []) + [right]:
                    assert re.search(rf"(?<!\d){operand}(?!\d)", example.prompt), (operand, example.prompt)
                assert previous is None or left == previous
                previous = result
            assert final == example.answer == str(previous)
            assert int(example.answer) <= 1000


def in_small_table(left: int, sign: str, right: int) -> bool:
    """The arithmetic table every step of a problem comes from (math_problems.py, SUM_LIMIT)."""
    if sign in "+-":
        return 1 <= left <= SUM_LIMIT and 2 <= right <= 9
    if sign == "*":
        return 2 <= left <= 9 and 2 <= right <= 9
    return left % right == 0 and 2 <= right <= 9 and 2 <= left // right <= 9


def test_every_problem_step_and_every_drilled_fact_is_in_the_small_table(all_examples):
    steps = {
        step
        for (task, _, _), examples in all_examples.items() if task == "math"
        for example in examples
        for step in re.split(r"(?<=\.) ", example.target[1:].split(" #### ")[0])
    }  # fmt: skip
    lines = arithmetic_facts(300, seed=0)
    facts = [fact for line in lines for fact in re.split(r"(?<=\.) ", line)]
    assert len(lines) == 300 and lines == arithmetic_facts(300, seed=0) and lines != arithmetic_facts(300, seed=1)
    for fact in steps | set(facts):
        left, sign, right, result = EQUATION.match(fact).groups()
        assert in_small_table(int(left), sign, int(right)), fact
        assert int(result) == {"+": int.__add__, "-": int.__sub__, "*": int.__mul__, "/": int.__floordiv__}[sign](
            int(left), int(right)
        )
    assert len(steps) < 700  # a table a 1M-parameter model can learn, not thousands of facts
    assert all("####" not in line and "Question" not in line for line in lines)


def test_code_references_pass_and_wrong_bodies_fail(all_examples):
    for (task, language, pool), examples in all_examples.items():
        if task != "code":
            continue
        for example in examples:
            assert example.target.endswith("\n") and example.target.startswith("    ")
            assert 1 <= example.target.count("\n") <= 4  # four only for the two accumulator loops
            assert f"def {example.entry_point}(" in example.prompt and f">>> {example.entry_point}(" in example.prompt
            assert passes(example.prompt, example.target, example.test, example.entry_point), example.id
            assert example.test.count("assert ") >= 2
            if language == "zh" and pool in ("test", "dev"):
                assert not passes(example.prompt, "    return None\n", example.test, example.entry_point)
                assert_other_families_fail(example)


def assert_other_families_fail(example):
    """The body of every other family on the same argument (with this item's constant where it takes one) fails."""
    family = FAMILIES_BY_ID[example.id.split("-")[3]]
    params = next(p for p in family.params if body_source(family, tuple(sorted(p.items()))) == example.target)
    for other in FAMILIES:
        if other.id == family.id or other.argument != family.argument:
            continue
        other_params = params if params in other.params else other.params[0]
        wrong_body = body_source(other, tuple(sorted(other_params.items())))
        assert not passes(example.prompt, wrong_body, example.test, example.entry_point), (example.id, other.id)


def test_at_least_thirty_code_families_present(all_examples):
    families = {example.id.split("-")[3] for example in all_examples[("code", "zh", "test")]}
    assert len(families) >= 30
    assert len(FAMILIES) >= 30


def test_general_text_and_parallel_pairs_are_clean():
    operator = re.compile(r"\d\s*[-+*/=]\s*\d|\d\s*=|####|\bdef |return ")
    for language in LANGUAGES:
        paragraphs = general_text(language, 300, seed=0)
        assert len(paragraphs) == 300 and len(set(paragraphs)) > 250
        assert not any(operator.search(paragraph) for paragraph in paragraphs)
        assert not any("{" in paragraph or "}" in paragraph for paragraph in paragraphs)
    assert all(CJK.search(p) for p in general_text("zh", 50, seed=0))
    assert all(CYRILLIC.search(p) for p in general_text("ru", 50, seed=0))
    for language in PARALLEL_LANGUAGES:
        pairs = parallel_pairs(language, 200, seed=0)
        assert len(pairs) == 200
        for english, translation in pairs:
            assert english.isascii() and english != translation
            assert not operator.search(english) and not operator.search(translation)
            assert re.findall(r"\d+", english) == re.findall(r"\d+", translation)
    assert all(CJK.search(t) for _, t in parallel_pairs("zh", 50, seed=0))
    assert all(CYRILLIC.search(t) for _, t in parallel_pairs("ru", 50, seed=0))


def test_statement_pairs_answer_nothing_and_never_state_a_held_out_problem(all_examples):
    held_out = {item.prompt for (_, _, pool), items in all_examples.items() if pool != "adapter" for item in items}
    for language in PARALLEL_LANGUAGES:
        pairs = statement_pairs(language, 200, seed=0)
        assert len(pairs) == 200 and len(set(pairs)) > 150
        for english, translation in pairs:
            assert english.isascii() and english != translation
            assert re.findall(r"\d+", english) == re.findall(r"\d+", translation)
            assert not any(marker in english + translation for marker in ("####", "return ", "def ", ">>>", "="))
            assert not any(f"Question: {text}\nAnswer:" in held_out for text in (english, translation))


def test_behaviour_lines_state_true_behaviour_of_adapter_pool_functions_without_code(all_examples):
    cases = code_cases("adapter", 150, seed=7)
    held_out = [item.prompt for (task, language, pool), items in all_examples.items()
                if task == "code" and language == "en" and pool != "adapter" for item in items]  # fmt: skip
    for family_id, params, inputs, outputs in cases:
        function = reference_function(FAMILIES_BY_ID[family_id], params)
        assert [function(copy.deepcopy(value)) for value in inputs] == outputs
        phrase = LEXICONS["en"].CODE_PHRASES[family_id].format(**dict(params))
        assert not any(f'"""{phrase}\n' in prompt and f"({inputs[0]!r})\n" in prompt for prompt in held_out)
    for language in LANGUAGES:
        lines = behaviour_lines(language, 150, seed=7)
        assert lines == behaviour_lines(language, 150, seed=7) != behaviour_lines(language, 150, seed=8)
        for line, (family_id, params, inputs, outputs) in zip(lines, cases, strict=True):
            phrase = LEXICONS[language].CODE_PHRASES[family_id].format(**dict(params))
            shown = f"{inputs[0]!r} -> {outputs[0]!r}; {inputs[1]!r} -> {outputs[1]!r}"
            assert line == f"{phrase} {shown}", language
            assert not any(marker in line for marker in ("def ", "return ", ">>>", "####", "=")), line


def test_number_copy_lines_repeat_their_numbers():
    lines = number_copy_lines(300, seed=0, highest=199)
    assert lines == number_copy_lines(300, seed=0, highest=199) != number_copy_lines(300, seed=1, highest=199)
    for line in lines:
        first, second = line.split(" | ")
        assert first == second and 2 <= len(first.split()) <= 6
    assert {int(n) for line in lines for n in line.split(" | ")[0].split()} == set(range(200))


def test_templates_are_aligned_and_complete_in_every_language():
    english = LEXICONS["en"]
    for language, lexicon in LEXICONS.items():
        assert set(lexicon.CODE_PHRASES) == {family.id for family in FAMILIES}, language
        assert all(len(names) == NAME_COUNT for names in lexicon.NAMES.values()), language
        assert len(lexicon.GENERAL_SENTENCES) == len(english.GENERAL_SENTENCES), language
        assert {c: len(t) for c, t in lexicon.MATH_CLAUSES.items()} == {
            c: len(t) for c, t in english.MATH_CLAUSES.items()
        }, language
        words = lexicon.slots(("f", 0), ("m", 1), "apple", "box", "park")
        for clause, templates in lexicon.MATH_CLAUSES.items():
            numbers = (3, 21) if clause == "boxes" else (() if clause.startswith("ask") else (22,))
            for template in templates:
                template.format(**words, **clause_slots(lexicon, clause, numbers, "apple", "box"))
        for template in lexicon.GENERAL_SENTENCES:
            template.format(**words, **clause_slots(lexicon, "have", (5,), "apple", "box"), k=3)
        for family in FAMILIES:
            for params in family.params:
                lexicon.CODE_PHRASES[family.id].format(**params)


def test_russian_nouns_agree_with_numbers():
    counted = LEXICONS["ru"].counted
    assert [counted(n, "apple") for n in (1, 2, 5, 11, 21, 22, 25)] == [
        "1 яблоко", "2 яблока", "5 яблок", "11 яблок", "21 яблоко", "22 яблока", "25 яблок",
    ]  # fmt: skip
    assert counted(21, "book", "acc") == "21 книгу" and counted(14, "book") == "14 книг"


def test_bad_requests_name_the_valid_choices():
    with pytest.raises(ValueError, match="valid: en, zh, ru, es"):
        math_examples("fr", "test", 5, seed=0)
    with pytest.raises(ValueError, match="valid: train, dev, test, adapter"):
        code_examples("zh", "validation", 5, seed=0)
    with pytest.raises(ValueError, match="at most"):
        math_examples("zh", "dev", 5000, seed=0)
    with pytest.raises(ValueError, match="valid: zh, ru, es"):
        parallel_pairs("en", 5, seed=0)
    with pytest.raises(ValueError, match="valid"):
        general_text("de", 5, seed=0)
