"""Numbers written as words of zh/ru/es ("十二", "двенадцать", "doce"): knowledge only the language adapters hold.

With `BuiltinSettings.number_words`, the composite cells write the numbers of their questions and docstrings as
words, the base model's corpora never contain a number word, and each language adapter's text pairs paragraphs
written with number words with the same paragraphs written in digits. Solving a cell then needs both adapters: the
language adapter to read "двенадцать" as 12, the skill adapter to compute or write code with it.
Forms are the plain cardinal (Russian masculine, Spanish "uno"), without agreement with the counted noun.
"""

from __future__ import annotations

import re

ZH_DIGITS = "零一二三四五六七八九"
RU_UNITS = ("ноль один два три четыре пять шесть семь восемь девять десять одиннадцать двенадцать тринадцать "
            "четырнадцать пятнадцать шестнадцать семнадцать восемнадцать девятнадцать").split()  # fmt: skip
RU_TENS = "_ _ двадцать тридцать сорок пятьдесят шестьдесят семьдесят восемьдесят девяносто".split()
RU_HUNDREDS = "_ сто двести триста четыреста пятьсот шестьсот семьсот восемьсот девятьсот".split()
ES_UNITS = ("cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince dieciséis "
            "diecisiete dieciocho diecinueve veinte veintiuno veintidós veintitrés veinticuatro veinticinco "
            "veintiséis veintisiete veintiocho veintinueve").split()  # fmt: skip
ES_TENS = "_ _ _ treinta cuarenta cincuenta sesenta setenta ochenta noventa".split()
ES_HUNDREDS = ("_ ciento doscientos trescientos cuatrocientos quinientos seiscientos setecientos ochocientos "
               "novecientos").split()  # fmt: skip
HIGHEST = 999
# A whole integer in running text: not part of a longer number, a decimal or a word ("x2", "3.5").
INTEGER = re.compile(r"(?<![\w.])\d+(?![\w.]|\.\d)")
ZH_INTEGER = re.compile(r"(?<![\d.])\d+(?![\d.])")  # Chinese writes "5个": a digit may touch a character


def chinese_number(n: int) -> str:
    """12 -> 十二, 20 -> 二十, 105 -> 一百零五, 2 -> 两 (the counting form)."""
    if n == 2:
        return "两"
    hundreds, rest = divmod(n, 100)
    tens, units = divmod(rest, 10)
    parts = [f"{ZH_DIGITS[hundreds]}百"] if hundreds else []
    if tens:
        parts.append(("" if tens == 1 and not hundreds else ZH_DIGITS[tens]) + "十")
    elif hundreds and units:
        parts.append("零")
    if units or not parts:
        parts.append(ZH_DIGITS[units])
    return "".join(parts)


def composed_number(n: int, units: list[str], tens: list[str], hundreds: list[str], and_word: str = "") -> str:
    """A cardinal built from word lists: hundreds, then one word below `len(units)`, else tens (`and_word`) units."""
    hundred, rest = divmod(n, 100)
    words = [hundreds[hundred]] if hundred else []
    if rest < len(units):
        words += [units[rest]] if rest or not words else []
    else:
        ten, unit = divmod(rest, 10)
        words.append(tens[ten])
        if unit:
            words += [and_word, units[unit]] if and_word else [units[unit]]
    return " ".join(words)


def russian_number(n: int) -> str:
    return composed_number(n, RU_UNITS, RU_TENS, RU_HUNDREDS)


def spanish_number(n: int) -> str:
    return "cien" if n == 100 else composed_number(n, ES_UNITS, ES_TENS, ES_HUNDREDS, and_word="y")


NUMBER_WORDS = {"zh": chinese_number, "ru": russian_number, "es": spanish_number}


def number_word(language: str, n: int) -> str:
    """`n` (0..999) as a cardinal number word of `language`."""
    if language not in NUMBER_WORDS:
        raise ValueError(f"number words exist for {', '.join(NUMBER_WORDS)}, not '{language}'")
    if not 0 <= n <= HIGHEST:
        raise ValueError(f"number words cover 0..{HIGHEST}, not {n}")
    return NUMBER_WORDS[language](n)


def spell_numbers(text: str, language: str) -> str:
    """`text` with every whole integer written as a word of `language` ("5个苹果" -> "五个苹果")."""
    pattern = ZH_INTEGER if language == "zh" else INTEGER
    return pattern.sub(lambda match: number_word(language, int(match.group())), text)
