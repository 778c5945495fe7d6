"""Scorers: last-number extraction for math, sandboxed execution of completions for code."""

from __future__ import annotations

import dataclasses

import pytest

from tasks.examples import Example
from tasks.scoring import (
    build_code_program,
    extract_final_number,
    repeats_function,
    score_code_completion,
    score_math_answer,
    truncate_at_stop,
)

TIMEOUT_S = 3.0


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


@pytest.mark.parametrize(
    "text, stop, expected",
    [
        ("def f():\n    return 1\n\ndef g():", ("\ndef ", "\nclass "), "def f():\n    return 1\n"),
        ("x = 1\nclass A: pass\ndef b(): pass", ("\ndef ", "\nclass "), "x = 1"),
        ("no stop here", ("\n\n",), "no stop here"),
        ("keep everything", ("",), "keep everything"),
    ],
)
def test_truncate_at_stop(text, stop, expected):
    assert truncate_at_stop(text, stop) == expected


HUMANEVAL_EXAMPLE = Example(
    id="HumanEval/0",
    prompt='from typing import List\n\n\ndef add_all(numbers: List[int]) -> int:\n    """Sum the numbers."""\n',
    target="    return sum(numbers)\n",
    test="def check(candidate):\n    assert candidate([1, 2, 3]) == 6\n    assert candidate([]) == 0\n",
    entry_point="add_all",
)
MBPP_EXAMPLE = Example(
    id="mbpp/1",
    prompt="Write a function to square a number.\n",
    target="def square(x):\n    return x * x\n",
    test="assert square(3) == 9\nassert square(-2) == 4",
    entry_point="square",
)


@pytest.mark.parametrize(
    "example, completion, correct",
    [
        (HUMANEVAL_EXAMPLE, "    return sum(numbers)\n", True),
        (HUMANEVAL_EXAMPLE, "    return 6\n", False),
        (HUMANEVAL_EXAMPLE, "    raise NotImplementedError\n", False),
        (HUMANEVAL_EXAMPLE, "def add_all(numbers: List[int]) -> int:\n    return sum(numbers)\n", True),
        (HUMANEVAL_EXAMPLE, "    import sys\n    sys.exit(0)\n", False),
        (HUMANEVAL_EXAMPLE, "    return sum(numbers)\nimport os\nos._exit(0)\n", False),
        (HUMANEVAL_EXAMPLE, "    while True:\n        pass\n", False),
        (MBPP_EXAMPLE, "def square(x):\n    return x * x\n", True),
        (MBPP_EXAMPLE, "import math\n\ndef square(x):\n    return x ** 2\n", True),
        (MBPP_EXAMPLE, "def square(x):\n    return x + x\n", False),
        (MBPP_EXAMPLE, "import sys\nsys.exit(0)\n", False),
    ],
    ids=[
        "humaneval-body", "humaneval-wrong", "humaneval-raises", "humaneval-full-function", "humaneval-sys.exit",
        "humaneval-os._exit", "humaneval-hang", "mbpp-right", "mbpp-right-with-import", "mbpp-wrong", "mbpp-sys.exit",
    ],
)  # fmt: skip
def test_score_code_completion(example, completion, correct):
    assert score_code_completion(example, completion, timeout_s=TIMEOUT_S) is correct


CHAT_HUMANEVAL = dataclasses.replace(HUMANEVAL_EXAMPLE, prompt="<|user|>Complete it.<|assistant|>",
                                     code_context=HUMANEVAL_EXAMPLE.prompt)  # fmt: skip
CHAT_MBPP = dataclasses.replace(MBPP_EXAMPLE, code_context="")


@pytest.mark.parametrize(
    "example, reply, correct",
    [
        (CHAT_HUMANEVAL, "Here it is:\n```python\nfrom typing import List\n\ndef add_all(numbers):\n    return sum(numbers)\n```\nIt sums.", True),
        (CHAT_HUMANEVAL, "```python\ndef add_all(numbers: List[int]) -> int:\n    return sum(numbers)\n```", True),
        (CHAT_HUMANEVAL, "```\n    return sum(numbers)\n```", True),
        (CHAT_HUMANEVAL, "```python\ndef add_all(numbers: List[int]) -> int:\n    return sum(numbers)", True),
        (CHAT_HUMANEVAL, "```python\ndef add_all(numbers):\n    return 6\n```", False),
        (CHAT_HUMANEVAL, "The sum of the numbers.", False),
        (CHAT_MBPP, "Sure!\n```py\ndef square(x):\n    return x * x\n```\n```python\nsquare = None\n```", True),
        (CHAT_MBPP, "```python\ndef square(x):\n    return x + x\n```", False),
    ],
    ids=["restated-with-prose", "restated-using-prompt-import", "body-only", "unclosed-fence", "wrong",
         "prose-only", "mbpp-first-block", "mbpp-wrong"],
)  # fmt: skip
def test_chat_reply_code_runs_after_the_code_context(example, reply, correct):
    assert score_code_completion(example, reply, timeout_s=TIMEOUT_S) is correct


def test_full_function_completion_is_not_prefixed_by_the_prompt():
    completion = "def add_all(numbers: List[int]) -> int:\n    return sum(numbers)\n"
    program = build_code_program(HUMANEVAL_EXAMPLE, completion)
    assert program.count("def add_all") == 1
    assert program.startswith("from typing import List\n")
    assert program.rstrip().endswith("check(add_all)")


def test_mbpp_program_runs_the_asserts_as_they_are():
    program = build_code_program(MBPP_EXAMPLE, MBPP_EXAMPLE.target)
    assert "check(" not in program and program.rstrip().endswith("assert square(-2) == 4")


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("def square(x):\n    return x * x", True),
        ("\nimport math\nfrom os import path\n\ndef square(x): ...", True),
        ("    return x * x", False),
        ("def square_all(xs): ...", False),
        ("def helper(): ...\ndef square(x): ...", False),
    ],
)
def test_repeats_function(completion, expected):
    assert repeats_function(completion, "square") is expected


def test_check_test_without_entry_point_names_the_example():
    example = Example(id="HumanEval/9", prompt="", target="", test="def check(candidate):\n    pass\n")
    with pytest.raises(ValueError, match="HumanEval/9"):
        build_code_program(example, "")
