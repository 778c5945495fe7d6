"""What only the built-in language adapters know: number words (tasks/builtin/number_words.py: correct cardinals,
spelled cells, none in the base model's corpora) and, with `alignment_in="language_adapters"`, the texts that tie
zh/ru/es to English; and no test item in any training or pretraining text."""

from __future__ import annotations

import re

import pytest

from bench.builtin_suite import BuiltinSettings, adapter_datasets, alignment_texts, cell_data, pretraining_texts
from tasks.builtin import code_examples, math_examples
from tasks.builtin.corpora import number_word_texts
from tasks.builtin.number_words import NUMBER_WORDS, number_word, spell_numbers
from tests.test_builtin_suite import tiny_settings

KNOWN = {
    "zh": {2: "两", 10: "十", 12: "十二", 20: "二十", 35: "三十五", 100: "一百", 105: "一百零五", 118: "一百一十八"},
    "ru": {2: "два", 12: "двенадцать", 40: "сорок", 35: "тридцать пять", 100: "сто", 118: "сто восемнадцать"},
    "es": {2: "dos", 16: "dieciséis", 22: "veintidós", 35: "treinta y cinco", 100: "cien", 118: "ciento dieciocho"},
}
SPELLED = range(2, 200)  # 0 and 1 ("一", "uno", "один") are also ordinary words of these languages


@pytest.mark.parametrize("language", sorted(KNOWN))
def test_number_words_are_the_cardinals_of_the_language(language):
    for n, word in KNOWN[language].items():
        assert number_word(language, n) == word
    assert len({number_word(language, n) for n in range(1000)}) == 1000


def test_spelling_replaces_whole_integers_only():
    assert spell_numbers("小明有5个苹果，每个8元。", "zh") == "小明有五个苹果，每个八元。"
    assert spell_numbers("suma 7 a cada número de xs, no x2 ni 3.5", "es") == "suma siete a cada número de xs, no x2 ni 3.5"
    with pytest.raises(ValueError, match="not 'en'"):
        number_word("en", 3)


def mentions(text: str, language: str, word: str) -> bool:
    if language == "zh":
        return word in text
    return re.search(rf"(?<!\w){re.escape(word)}(?!\w)", text) is not None


def test_the_base_models_corpora_hold_no_number_word_and_the_language_adapters_do():
    settings = tiny_settings(number_words=True, english_texts=200, other_language_texts=200, parallel_pairs=100,
                             reverse_pairs=100, statement_pairs=100, behaviour_lines=100, language_texts=100)  # fmt: skip
    corpus = "\n".join(pretraining_texts(settings))
    datasets = {entry.language: examples for entry, examples in adapter_datasets(settings).items() if entry.language}
    for language in NUMBER_WORDS:
        words = [number_word(language, n) for n in SPELLED]
        # zh: the numerals are characters no other zh word of the suite uses; ru/es: whole words
        assert not [word for word in words if mentions(corpus, language, word)], language
        adapter_text = "\n".join(example.target for example in datasets[language])
        assert sum(mentions(adapter_text, language, word) for word in words) > 20
        assert any("\n" in example.target for example in datasets[language])  # number words, then digits


@pytest.mark.parametrize("skill", ["math", "code"])
def test_number_word_cells_spell_their_numbers_and_keep_the_targets(skill):
    settings = BuiltinSettings(number_words=True, cell_sizes={"train": 20, "dev": 5, "test_math": 20, "test_code": 20},
                               oracle_examples=20)  # fmt: skip
    plain = dict(vars(cell_data(BuiltinSettings(cell_sizes=settings.cell_sizes, oracle_examples=20), skill, "ru")))
    spelled = dict(vars(cell_data(settings, skill, "ru")))
    for split in ("train", "dev", "test", "composite_train"):
        for before, after in zip(plain[split], spelled[split]):
            assert (before.id, before.target, before.answer, before.test) == (after.id, after.target, after.answer, after.test)
            prose = after.prompt.split("\n")[0 if skill == "math" else 1]
            assert not re.search(r"(?<![\w.])\d+(?![\w.])", prose), prose
        assert any(before.prompt != after.prompt for before, after in zip(plain[split], spelled[split]))


def test_no_test_item_is_in_any_training_or_pretraining_text():
    settings = tiny_settings(number_words=True, english_texts=200, other_language_texts=200, statement_pairs=200,
                             skill_texts={"math": 100, "code": 100}, language_texts=200, skill_examples=200,
                             english_gloss=True)  # fmt: skip
    training = pretraining_texts(settings) + [
        example.prompt + example.target for examples in adapter_datasets(settings).values() for example in examples
    ]  # fmt: skip
    corpus = "\n".join(training)
    for language in NUMBER_WORDS:
        for make in (math_examples, code_examples):
            for number_words, english_gloss in ((False, False), (True, False), (False, True)):
                for item in make(language, "test", 100, 0, number_words=number_words, english_gloss=english_gloss):
                    assert item.prompt not in corpus, item.id
                    if english_gloss and make is math_examples:  # the restated question: the problem in English
                        assert item.target.split("\n")[0] not in corpus, item.id
                    if make is math_examples:  # a question (a docstring sentence may recur in another problem)
                        assert item.prompt.removeprefix("Question: ").split("\n")[0] not in corpus, item.id


def test_number_word_texts_pair_each_spelled_paragraph_with_its_digits():
    for text in number_word_texts("es", 50, seed=0):
        if "\n" in text:
            spelled, digits = text.split("\n")
            assert spell_numbers(digits, "es") == spelled and re.search(r"\d", digits)


def test_alignment_texts_go_to_the_language_adapters_only_when_asked():
    sizes = dict(english_texts=20, other_language_texts=20, parallel_pairs=30, reverse_pairs=30, statement_pairs=30,
                 behaviour_lines=30, language_texts=20)  # fmt: skip
    for alignment_in in ("base", "language_adapters"):
        settings = tiny_settings(alignment_in=alignment_in, **sizes)
        corpus = pretraining_texts(settings)
        adapters = {entry.language: data for entry, data in adapter_datasets(settings).items() if entry.language}
        for language in NUMBER_WORDS:
            aligned = set(alignment_texts(language, settings))
            assert len(aligned) > 100
            in_base = aligned & set(corpus)
            in_adapter = aligned & {example.target for example in adapters[language]}
            assert (in_base, in_adapter) == ((aligned, set()) if alignment_in == "base" else (set(), aligned))
    with pytest.raises(ValueError, match="alignment_in"):
        BuiltinSettings(alignment_in="nowhere")


@pytest.mark.parametrize("language", ["zh", "es"])
def test_english_gloss_replies_restate_the_task_in_english_then_solve_it(language):
    from tasks.builtin.math_problems import GLOSS_MARK

    plain_items, english_items = math_examples(language, "test", 30, 0), math_examples("en", "test", 30, 0)
    glossed = math_examples(language, "test", 30, 0, english_gloss=True)
    for plain, gloss, english in zip(plain_items, glossed, english_items):
        assert (gloss.id, gloss.prompt, gloss.answer) == (plain.id, plain.prompt, plain.answer)
        question = english.prompt.removeprefix("Question: ").removesuffix("\nAnswer:")
        assert gloss.target == f" {GLOSS_MARK} {question}\nSolution:{plain.target}"
    glossed = code_examples(language, "test", 30, 0, english_gloss=True)
    for plain, gloss in zip(code_examples(language, "test", 30, 0), glossed):
        comment, body = gloss.target.split("\n", 1)
        assert comment.startswith(f"    # {GLOSS_MARK} Return") and body == plain.target and gloss.test == plain.test


def test_gloss_pairs_end_their_other_language_half_with_the_mark_in_the_language_adapters_only():
    from tasks.builtin.math_problems import GLOSS_MARK

    settings = tiny_settings(english_gloss=True, alignment_in="language_adapters", parallel_pairs=20, reverse_pairs=20,
                             statement_pairs=20, skill_texts={"math": 0, "code": 0})  # fmt: skip
    assert not any(GLOSS_MARK in text for text in pretraining_texts(settings))
    datasets = {entry.language: data for entry, data in adapter_datasets(settings).items()}
    adapter = [example.target for example in datasets["ru"]]
    marked = [text for text in adapter if f"\n{GLOSS_MARK} " in text]
    assert len(marked) == 20 + 10 and all(re.search("[а-я]", text.split(GLOSS_MARK)[0]) for text in marked)
