"""Math scoring: the last number of a generation, read as the cell's language writes numbers."""

from __future__ import annotations


import pytest

from tasks.examples import Example
from tasks.scoring import (
    extract_final_number,
    score_math_answer,
)
from tasks.registry import TASKS

@pytest.mark.parametrize(
    "text, expected",
    [
        ("The answer is 42.", "42"),
        ("42", "42"),
        ("She has 3 apples and buys 5 more, so 8", "8"),
        ("Total: 1,234 dollars", "1234"),
        ("It costs 1,234,567.", "1234567"),
        ("The temperature is -5 degrees.", "-5"),
        ("The change is −7", "-7"),  # Unicode minus sign
        ("pages 3-5", "5"),  # a hyphen between numbers is not a sign
        ("He pays $3.50 in total.", "3.5"),
        ("So the answer is 4.0", "4"),
        ("18.00", "18"),
        ("0.25 of the cake", "0.25"),
        ("It costs $5", "5"),
        ("He lost -$12", "-12"),
        ("答案是１２３", "123"),  # full-width digits
        ("总共１，２３４个", "1234"),  # full-width comma
        ("答案是 ４２。", "42"),  # ideographic full stop
        ("温度是－３度", "-3"),  # full-width minus
        ("উত্তর হল ৪২", "42"),  # Bengali digits (MGSM bn)
        ("คำตอบคือ ๑๕", "15"),  # Thai digits (MGSM th)
        ("answer42", "42"),  # glued to a word
        ("The answer is 42 apples. Great!", "42"),
        ("Die Antwort ist 3,5 Liter.", "3.5"),  # decimal comma (MGSM de)
        ("La réponse est 1\u202f234.", "1234"),  # narrow no-break space as thousands separator (MGSM fr)
        ("#### 72", "72"),
        ("3/4 of 20 is 15", "15"),
        ("We get 50%.", "50"),
        ("No number here.", None),
        ("", None),
    ],
)
def test_extract_final_number(text, expected):
    assert extract_final_number(text) == expected


@pytest.mark.parametrize(
    "generation, answer, correct",
    [
        ("So she has 1000 left.", "1,000", True),
        ("The answer is 18.", "18.0", True),
        ("The answer is 18.5", "18", False),
        ("It is $1,000.00", "1000", True),
        ("I don't know", "7", False),
        ("7 apples, then 2 more: 9", "7", False),
    ],
)
def test_score_math_answer(generation, answer, correct):
    assert score_math_answer(generation, answer) is correct


def test_score_math_answer_rejects_a_reference_without_a_number():
    with pytest.raises(ValueError, match="'n/a'"):
        score_math_answer("42", "n/a")


# How people write numbers in es and ru (MGSM's es/ru questions use "70 000"): the last number of each text, read
# in that language.
SPANISH_AND_RUSSIAN_NUMBERS = [
    ("Tiene 70.000 dólares.", "70000"),
    ("Gana $276.000 al año.", "276000"),
    ("La casa cuesta 1.250.000 €", "1250000"),
    ("El precio es 80 000 dólares.", "80000"),  # MGSM es question style
    ("Al final, 23 786 personas", "23786"),
    ("Paga 1 500,50 $", "1500.5"),
    ("Paga 1.500,75 $", "1500.75"),
    ("Paga $1,500.75", "1500.75"),  # English style from an English-trained adapter
    ("Ganó $2,125 en total.", "2125"),  # MGSM's own es answer column writes thousands with a comma
    ("Cada uno cuesta 3,5 €", "3.5"),
    ("Cuesta $0,25", "0.25"),
    ("Un lápiz cuesta $1,20", "1.2"),
    ("Una goma cuesta $0.30.", "0.3"),  # a dot before two digits is decimal
    ("Mide 3.5 metros", "3.5"),
    ("Pesa 0.500 kg", "0.5"),  # a leading 0 is never a thousands group
    ("π es 3.14159", "3.14159"),
    ("La respuesta es 18.", "18"),
    ("La respuesta es 18.000.", "18000"),
    ("2 * 9 = 18 manzanas", "18"),
    ("Pierde -3,5 grados", "-3.5"),
    ("Ответ: 70 000 рублей.", "70000"),  # MGSM ru question style
    ("Ответ: 70\u00a0000 рублей.", "70000"),  # no-break space
    ("Ответ: 1\u202f234\u202f567 рублей.", "1234567"),  # narrow no-break space
    ("Итого 1 234,5 рубля", "1234.5"),
    ("Стоимость 2,5 доллара", "2.5"),
    ("Всего 15.000 рублей", "15000"),
    ("Значит, 3 курицы снесли 16 яиц", "16"),
    ("Ответ: 18", "18"),
]


@pytest.mark.parametrize("language", ["es", "ru"])
@pytest.mark.parametrize("text, expected", SPANISH_AND_RUSSIAN_NUMBERS)
def test_extract_final_number_in_spanish_and_russian(text, expected, language):
    assert extract_final_number(text, language) == expected


# Where es/ru and en/zh read the same text differently; the en/zh reading is the one from before languages existed.
@pytest.mark.parametrize(
    "text, comma_decimal, dot_decimal",
    [
        ("70.000", "70000", "70"),
        ("$276.000", "276000", "276"),
        ("70 000", "70000", "0"),
        ("1.500,75", "1500.75", "75"),
        ("3.500", "3500", "3.5"),
        ("0,125", "0.125", "125"),
    ],
)
def test_languages_read_dots_and_spaces_their_own_way(text, comma_decimal, dot_decimal):
    assert extract_final_number(text, "es") == extract_final_number(text, "ru") == comma_decimal
    assert extract_final_number(text, "en") == extract_final_number(text, "zh") == dot_decimal
    assert extract_final_number(text) == dot_decimal  # no language: read as before


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize(
    "text, expected",
    [("Total: 1,234 dollars", "1234"), ("He pays $3.50", "3.5"), ("It costs 1,234,567.", "1234567"),
     ("总共１，２３４个", "1234"), ("答案是 ４２。", "42"), ("1\u00a0234", "1234"), ("3,5", "3.5"), ("0.001", "0.001")],
)  # fmt: skip
def test_english_and_chinese_numbers_are_read_as_before(text, expected, language):
    assert extract_final_number(text, language) == expected


@pytest.mark.parametrize(
    "generation, answer, language, correct",
    [
        ("Por lo tanto, gana $70.000 al año.", "70000", "es", True),
        ("Por lo tanto, gana $70.000 al año.", "70", "es", False),
        ("Entonces necesita 80 000 dólares.", "80000", "es", True),
        ("Ответ: 88 000", "88000", "ru", True),
        ("Ответ: 2,125", "2,125", "ru", True),  # the reference is read as MGSM's answer column writes it
        ("Ответ: 2 125", "2,125", "ru", True),
        ("Gana 1.500 €", "1,500", "es", True),
        ("Gana 1.500 €", "1500", "en", False),  # en reads 1.5
        ("Son 70 000", "70000", "en", False),  # en reads 70 and 000
        ("So 1,000 in total", "1000", "zh", True),
    ],
)
def test_score_math_answer_reads_the_generation_in_its_language(generation, answer, language, correct):
    assert score_math_answer(generation, answer, language) is correct


@pytest.mark.parametrize("language", ["en", "zh", "ru", "es"])
def test_math_task_scores_in_the_cell_language(language):
    example = Example(id="m", prompt="", target="", answer="70000")
    score = TASKS["math"].scorer_for(language)
    assert score(example, "La respuesta es 70.000") is (language in ("es", "ru"))
    assert TASKS["math"].score(example, "La respuesta es 70.000") is False  # no language: read as before
