"""The function families of the built-in code tasks: a short reference body, its parameters and its inputs.

A family is language-neutral; its docstring sentence lives in each language module (`CODE_PHRASES[family.id]`).
Bodies are one to three short lines so a tiny model can write them token by token. Inputs are small (numbers up
to a few hundred, a handful of short ASCII words) so the hidden tests run in microseconds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

WORDS = (
    "apple", "banana", "river", "stone", "paper", "moon", "tree", "bird", "house", "water", "green", "music",
    "light", "table", "cat", "sun", "lemon", "window", "garden", "tiger", "cloud", "bread", "chair", "sea",
    "book", "pen", "star", "road", "egg", "orange", "rain", "snow", "fish", "milk", "honey", "lamp", "door",
    "ship", "frog", "grape", "mango", "pencil", "forest", "summer", "winter", "rabbit", "candle", "silver",
)  # fmt: skip
PALINDROMES = ("level", "kayak", "radar", "noon", "civic", "refer", "madam", "wow", "racecar", "stats")

InputSampler = Callable[[random.Random], object]


@dataclass(frozen=True)
class Family:
    """One kind of function: `body` (with {k}/{k2} filled from one of `params`) applied to `argument`."""

    id: str
    argument: str  # "xs" (list of ints), "n" (int), "s" (str) or "words" (list of str)
    body: str  # unindented; code_problems indents it by four spaces
    sample_input: InputSampler
    params: tuple[dict, ...] = ({},)
    edge_inputs: tuple = ()  # always among the hidden tests: the cases a plausible wrong body gets wrong


def int_list(low: int = 0, high: int = 20, min_length: int = 3, max_length: int = 7) -> InputSampler:
    return lambda rng: [rng.randint(low, high) for _ in range(rng.randint(min_length, max_length))]


def integer(low: int, high: int) -> InputSampler:
    return lambda rng: rng.randint(low, high)


def number_of_digits(max_digits: int = 3) -> InputSampler:
    return lambda rng: rng.randint(0, 10 ** rng.randint(1, max_digits) - 1)


def text(min_words: int = 1, max_words: int = 1) -> InputSampler:
    return lambda rng: " ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words)))


def word_or_palindrome(rng: random.Random) -> str:
    return rng.choice(PALINDROMES) if rng.random() < 0.5 else text(1, 2)(rng)


def word_list(min_length: int = 2, max_length: int = 5) -> InputSampler:
    return lambda rng: rng.sample(WORDS, rng.randint(min_length, max_length))


def constants(low: int, high: int) -> tuple[dict, ...]:
    return tuple({"k": k} for k in range(low, high + 1))


def letters(choices: str) -> tuple[dict, ...]:
    return tuple({"k": letter} for letter in choices)


LETTER_SWAPS = tuple({"k": old, "k2": new} for old in "aeio" for new in "aeiou" if old != new)
NUMBERS = int_list()

FAMILIES = (
    Family("add_each", "xs", "return [x + {k} for x in xs]", NUMBERS, constants(1, 20), ([],)),
    Family("subtract_each", "xs", "return [x - {k} for x in xs]", NUMBERS, constants(1, 9)),
    Family("multiply_each", "xs", "return [x * {k} for x in xs]", int_list(0, 12), constants(2, 9)),
    Family("square_each", "xs", "return [x * x for x in xs]", int_list(0, 12)),
    Family("keep_greater", "xs", "return [x for x in xs if x > {k}]", NUMBERS, constants(2, 15), ([],)),
    Family("keep_less", "xs", "return [x for x in xs if x < {k}]", NUMBERS, constants(2, 15), ([],)),
    Family("keep_even", "xs", "return [x for x in xs if x % 2 == 0]", NUMBERS, edge_inputs=([],)),
    Family("keep_odd", "xs", "return [x for x in xs if x % 2 == 1]", NUMBERS, edge_inputs=([],)),
    Family("keep_multiples", "xs", "return [x for x in xs if x % {k} == 0]", NUMBERS, constants(3, 5)),
    Family("remove_value", "xs", "return [x for x in xs if x != {k}]", int_list(0, 9, 4, 8), constants(0, 9)),
    Family("sum_all", "xs", "return sum(xs)", NUMBERS, edge_inputs=([],)),
    Family("sum_even", "xs", "return sum(x for x in xs if x % 2 == 0)", NUMBERS, edge_inputs=([],)),
    Family("sum_greater", "xs", "return sum(x for x in xs if x > {k})", NUMBERS, constants(2, 15)),
    Family("product", "xs", "result = 1\nfor x in xs:\n    result *= x\nreturn result", int_list(1, 9, 2, 5)),
    Family("count_even", "xs", "return len([x for x in xs if x % 2 == 0])", NUMBERS, edge_inputs=([],)),
    Family("count_greater", "xs", "return len([x for x in xs if x > {k}])", NUMBERS, constants(2, 15)),
    Family("count_value", "xs", "return xs.count({k})", int_list(0, 9, 4, 8), constants(0, 9)),
    Family("contains_value", "xs", "return {k} in xs", int_list(0, 9, 3, 6), constants(0, 9)),
    Family("maximum", "xs", "return max(xs)", NUMBERS),
    Family("minimum", "xs", "return min(xs)", NUMBERS),
    Family("spread", "xs", "return max(xs) - min(xs)", NUMBERS),
    Family("reverse_list", "xs", "return xs[::-1]", NUMBERS),
    Family("sort_ascending", "xs", "return sorted(xs)", NUMBERS),
    Family("sort_descending", "xs", "return sorted(xs, reverse=True)", NUMBERS),
    Family("first_k", "xs", "return xs[:{k}]", int_list(min_length=5), constants(2, 4)),
    Family("last_k", "xs", "return xs[-{k}:]", int_list(min_length=5), constants(2, 4)),
    Family("index_of_max", "xs", "return xs.index(max(xs))", NUMBERS),
    Family("times_k", "n", "return n * {k}", integer(0, 99), constants(2, 9)),
    Family("is_even", "n", "return n % 2 == 0", integer(0, 999)),
    Family("divisible_by", "n", "return n % {k} == 0", integer(0, 200), constants(3, 9)),
    Family("sum_to_n", "n", "return sum(range(1, n + 1))", integer(1, 100)),
    Family("range_list", "n", "return list(range(1, n + 1))", integer(1, 12)),
    Family("multiples_list", "n", "return [i * {k} for i in range(1, n + 1)]", integer(1, 8), constants(2, 9)),
    Family("digit_sum", "n", "return sum(int(d) for d in str(n))", integer(10, 999)),
    Family("factorial", "n", "result = 1\nfor i in range(1, n + 1):\n    result *= i\nreturn result", integer(0, 8)),
    Family("count_digits", "n", "return len(str(n))", number_of_digits()),
    Family("square_n", "n", "return n * n", integer(0, 99)),
    Family("reverse_string", "s", "return s[::-1]", text(1, 2)),
    Family("to_upper", "s", "return s.upper()", text(1, 2)),
    Family("count_letter", "s", 'return s.count("{k}")', text(1, 3), letters("aeiort")),
    Family("replace_letter", "s", 'return s.replace("{k}", "{k2}")', text(1, 2), LETTER_SWAPS),
    Family("first_chars", "s", "return s[:{k}]", text(1, 2), constants(2, 4)),
    Family("string_length", "s", "return len(s)", text(1, 3)),
    Family("count_vowels", "s", 'return len([c for c in s if c in "aeiou"])', text(1, 3)),
    Family("is_palindrome", "s", "return s == s[::-1]", word_or_palindrome),
    Family("repeat_string", "s", "return s * {k}", text(), constants(2, 4)),
    Family("count_words", "s", "return len(s.split())", text(1, 6)),
    Family("join_words", "words", 'return " ".join(words)', word_list()),
    Family("longest_word", "words", "return max(words, key=len)", word_list()),
    Family("word_lengths", "words", "return [len(w) for w in words]", word_list()),
    Family("keep_long_words", "words", "return [w for w in words if len(w) > {k}]", word_list(3, 6), constants(3, 5)),
    Family("starts_with", "words", 'return [w for w in words if w.startswith("{k}")]', word_list(3, 6),
           letters("bcgmprstw")),
    Family("upper_words", "words", "return [w.upper() for w in words]", word_list()),
    Family("sort_words", "words", "return sorted(words)", word_list()),
)  # fmt: skip

FAMILIES_BY_ID = {family.id: family for family in FAMILIES}
