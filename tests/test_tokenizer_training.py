"""The built-in suite's tokenizer: numbers as single tokens, the same in every language, decoded back exactly."""

from __future__ import annotations

from bench.tokenizer_training import train_tokenizer

TEXTS = ["Ben has 12 apples. 7 + 5 = 12.", "小美家里有6块饼干。", "def f(xs):\n    return [x + 5 for x in xs]\n"] * 20


def test_numbers_below_the_limit_are_single_tokens_and_decode_exactly():
    tokenizer = train_tokenizer(TEXTS, vocab_size=300, number_tokens=200)
    for number in (0, 7, 12, 99, 199):
        assert len(tokenizer(str(number), add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.convert_tokens_to_ids("6") in tokenizer("有6块", add_special_tokens=False)["input_ids"]
    for text in ("Answer: 14 + 7 = 21. #### 21", "有16块饼干", "x = 345", "task_12([4, 11, 18])"):
        assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text
    assert len(tokenizer(" 345", add_special_tokens=False)["input_ids"]) >= 2  # beyond the limit: split


def test_without_number_tokens_digits_are_split_one_by_one():
    tokenizer = train_tokenizer(TEXTS, vocab_size=300)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("12", add_special_tokens=False)["input_ids"])
    assert tokens == ["1", "2"]
