"""Base-model corpora of the built-in suite: narrative in each language, parallel pairs, task statements, docstring
sentences with the behaviour they describe, and a copying drill.

The sentences reuse the vocabulary of the math problems and code docstrings (names, objects, buying and giving,
lists, numbers, words and letters) with no question answered and no code, so a language adapter learns the words
and the parallel pairs align them across languages without teaching either skill.
"""

from __future__ import annotations

import random

from tasks.builtin.code_families import FAMILIES
from tasks.builtin.code_problems import code_cases
from tasks.builtin.languages import CONTAINER_IDS, LEXICONS, NAME_COUNT, OBJECT_IDS, PLACE_IDS
from tasks.builtin.math_problems import math_questions
from tasks.builtin.number_words import spell_numbers
from tasks.builtin.pools import check_language, stable_int

# Share of paragraphs that tell a word problem's story (have, buy more, give away) without its question: they teach
# the problems' vocabulary in the language, never an answer. The rest are GENERAL_SENTENCES.
STORY_SHARE = 0.3
PARALLEL_LANGUAGES = ("zh", "ru", "es")


def _story_sentences(rng: random.Random, sentence_count: int) -> list[tuple]:
    """A word problem's story without its question: a starting amount, then amounts bought or given away."""
    if rng.random() < 0.5:
        boxes, per_box = rng.randint(2, 9), rng.randint(2, 12)
        sentences, total = [("clause", "boxes", rng.randrange(1000), {"boxes": boxes, "n": per_box})], boxes * per_box
    else:
        total = rng.randint(20, 99)
        sentences = [("clause", "have", rng.randrange(1000), {"n": total})]
    for _ in range(sentence_count - 1):
        if rng.random() < 0.5 or total < 4:
            amount = rng.randint(2, 40)
            sentences.append(("clause", "more", rng.randrange(1000), {"n": amount}))
            total += amount
        else:
            amount = rng.randint(2, total - 2)
            sentences.append(("clause", "less", rng.randrange(1000), {"n": amount}))
            total -= amount
    return sentences


def _choose_paragraph(rng: random.Random, sentence_count: int) -> dict:
    """Language-independent choices for one paragraph: who, what, where, and which sentences with which numbers."""
    person = (rng.choice("fm"), rng.randrange(NAME_COUNT))
    friend = (rng.choice("fm"), rng.randrange(NAME_COUNT))
    if friend == person:
        friend = (friend[0], (friend[1] + 1) % NAME_COUNT)
    if rng.random() < STORY_SHARE:
        sentences = _story_sentences(rng, sentence_count)
    else:
        indices = rng.sample(range(len(LEXICONS["en"].GENERAL_SENTENCES)), sentence_count)
        sentences = [("general", None, index, {"n": rng.randint(2, 99), "k": rng.randint(2, 9)}) for index in indices]
    return {
        "words": (person, friend, rng.choice(OBJECT_IDS), rng.choice(CONTAINER_IDS), rng.choice(PLACE_IDS)),
        "sentences": sentences,
    }


def render_paragraph(language: str, paragraph: dict) -> str:
    """The chosen sentences written in `language`."""
    lexicon = LEXICONS[language]
    _, _, object_id, container_id, _ = paragraph["words"]
    words = lexicon.slots(*paragraph["words"])
    sentences = []
    for source, clause, variant, numbers in paragraph["sentences"]:
        templates = lexicon.MATH_CLAUSES[clause] if source == "clause" else lexicon.GENERAL_SENTENCES
        n = numbers["n"]
        filled = {"n": n, "k": numbers.get("k"), "q": lexicon.counted(n, object_id)}
        filled["q_acc"] = lexicon.counted(n, object_id, "acc")
        if "boxes" in numbers:
            filled["boxes"] = lexicon.counted(numbers["boxes"], container_id)
            filled["boxes_acc"] = lexicon.counted(numbers["boxes"], container_id, "acc")
        sentences.append(templates[variant % len(templates)].format(**words, **filled))
    return lexicon.SENTENCE_SEPARATOR.join(sentences)


def general_text(language: str, count: int, seed: int) -> list[str]:
    """`count` short paragraphs (two to four sentences) of plain narrative in `language`."""
    check_language(language)
    rng = random.Random(stable_int("general", language, seed))
    return [render_paragraph(language, _choose_paragraph(rng, rng.randint(2, 4))) for _ in range(count)]


def number_word_texts(language: str, count: int, seed: int) -> list[str]:
    """`count` paragraphs of `language` written with number words, each followed by the same paragraph in digits:
    what a language adapter learns of its number words (`tasks/builtin/number_words.py`)."""
    texts = []
    for text in general_text(language, count, seed):
        spelled = spell_numbers(text, language)
        texts.append(text if spelled == text else f"{spelled}\n{text}")
    return texts


def parallel_pairs(language: str, count: int, seed: int) -> list[tuple[str, str]]:
    """`count` (English, translation) pairs of one or two sentences, each rendered from the same choices."""
    check_language(language, PARALLEL_LANGUAGES)
    rng = random.Random(stable_int("parallel", language, seed))
    pairs = []
    for _ in range(count):
        paragraph = _choose_paragraph(rng, rng.randint(1, 2))
        pairs.append((render_paragraph("en", paragraph), render_paragraph(language, paragraph)))
    return pairs


def statement_pairs(language: str, count: int, seed: int) -> list[tuple[str, str]]:
    """`count` (English, translation) pairs of task statements that answer nothing: half math questions of the
    adapter pool (the question only, no solution), half code docstring sentences (no code, no example)."""
    check_language(language, PARALLEL_LANGUAGES)
    questions = count // 2
    english, other = (math_questions(lang, "adapter", questions, seed) for lang in ("en", language))
    pairs = [(first[-1], second[-1]) for first, second in zip(english, other)]
    rng = random.Random(stable_int("statements", language, seed))
    for _ in range(count - questions):
        family = rng.choice(FAMILIES)
        params = rng.choice(family.params)
        pairs.append(tuple(LEXICONS[lang].CODE_PHRASES[family.id].format(**params) for lang in ("en", language)))
    return pairs


def behaviour_lines(language: str, count: int, seed: int, cases: int = 2) -> list[str]:
    """`count` lines that state what a function of the adapter pool returns, in `language`, and show it on `cases`
    inputs, with no code: "Return the sum of the digits of n. 895 -> 22; 957 -> 21".

    The same functions and inputs in every language (for a seed), so a docstring sentence in any language is followed
    by the same behaviour and comes to mean the same thing: the grounding a multilingual base model gets from text
    that describes, in many languages, what things do.
    """
    check_language(language)
    lines = []
    for family_id, params, inputs, outputs in code_cases("adapter", count, seed):
        phrase = LEXICONS[language].CODE_PHRASES[family_id].format(**dict(params))
        shown = "; ".join(f"{value!r} -> {result!r}" for value, result in list(zip(inputs, outputs))[:cases])
        lines.append(f"{phrase} {shown}")
    return lines


def number_copy_lines(count: int, seed: int, highest: int = 199) -> list[str]:
    """`count` lines that list two to six numbers (0..`highest`) and repeat them: "7 19 3 | 7 19 3".

    Language-neutral drill for copying numbers from earlier in the text, which both tasks need (a question's operands
    into the equations; a docstring's constant into the body); the numbers are uniform, so every number token learns.
    """
    rng = random.Random(stable_int("copy", seed))
    lines = []
    for _ in range(count):
        numbers = " ".join(str(rng.randint(0, highest)) for _ in range(rng.randint(2, 6)))
        lines.append(f"{numbers} | {numbers}")
    return lines
