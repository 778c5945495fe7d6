"""Scorers: the final number of a math answer (MGSM) and execution of a code completion against its tests."""

from __future__ import annotations

import ast
import keyword
import re
import unicodedata
from decimal import Decimal

from tasks.examples import Example
from tasks.sandbox import run_checked

# Full-width forms and the Unicode minus; digits of every script are mapped separately in `ascii_digits`.
NUMBER_PUNCTUATION = str.maketrans({"，": ",", "．": ".", "－": "-", "−": "-", "＋": "+", "＄": "$"})
# A sign counts unless glued to a Latin word or a number ("pages 3-5" ends in 5, not -5); a currency sign
# may sit between sign and digits; thousands go in groups of three after a comma or a (narrow/thin) no-break space;
# a decimal comma is taken only before one or two digits ("3,5" as in MGSM de/fr/es/ru).
NUMBER = re.compile(
    r"(?P<sign>(?<![0-9A-Za-z.])-)?[$€£¥₹]?"
    r"(?P<whole>\d{1,3}(?:[,\u00a0\u202f\u2009]\d{3})+(?!\d)|\d+)"
    r"(?:\.(?P<fraction>\d+)|,(?P<decimal_comma>\d{1,2})(?!\d))?"
)
# es and ru (MGSM's own questions: "70 000", "70\u00a0000"; models also write "$276.000") group thousands with a dot
# or a (no-break) space and write decimals with a comma ("3,5"). A dot or comma then groups of exactly three digits,
# after a leading group that is not 0, is read as thousands, as MGSM's integer answers need ("1.500" is 1500,
# "0.500" is 0.5); the comma too, since MGSM's es/ru answer column and English-trained adapters write "2,125". Any
# other dot or comma is a decimal mark ("3.5", "0,25", "1.500,75" is 1500.75). One number keeps one separator.
COMMA_DECIMAL_NUMBER = re.compile(
    r"(?P<sign>(?<![0-9A-Za-z.])-)?[$€£¥₹]?"
    r"(?P<whole>[1-9]\d{0,2}(?P<separator>[.,\u00a0\u202f\u2009 ])\d{3}(?:(?P=separator)\d{3})*(?!\d)|\d+)"
    r"(?:[.,](?P<fraction>\d+))?"
)
# How numbers are written per language; any other language (en, zh, ...) is read with `NUMBER`.
NUMBER_BY_LANGUAGE = {"es": COMMA_DECIMAL_NUMBER, "ru": COMMA_DECIMAL_NUMBER}
# What follows a solution in a chat reply and is not part of it: a main block or an example-usage section.
USAGE_SECTION = re.compile(r"^(?:if __name__\s*==|# Example usage)", flags=re.MULTILINE)
# A Markdown code fence: its language tag, then the code up to the closing fence (or the end of a cut-off reply).
FENCED_CODE = re.compile(r"```[\w+-]*[^\S\n]*\n(?P<code>.*?)(?:^[^\S\n]*```|\Z)", flags=re.DOTALL | re.MULTILINE)
# A HumanEval test: a top-level `check(candidate)` the checker calls with the entry point; other tests (MBPP asserts)
# run as they are.
CHECK_FUNCTION = re.compile(r"^def check\s*\(", flags=re.MULTILINE)


def ascii_digits(text: str) -> str:
    """Map decimal digits of any script (full-width, Bengali, Thai, ...) and full-width punctuation to ASCII."""
    digits = "".join(str(unicodedata.decimal(char)) if char.isdecimal() else char for char in text)
    return digits.translate(NUMBER_PUNCTUATION)


def canonical_number(sign: str, whole: str, fraction: str) -> str:
    """Write a number without separators, trailing zeros or a decimal point when it is whole ("4.0" -> "4")."""
    value = Decimal(f"{sign}{re.sub(r'[^0-9]', '', whole)}.{fraction or '0'}")
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def extract_final_number(text: str, language: str = "en") -> str | None:
    """The last number in `text` in canonical form (as lm-eval's MGSM flexible-extract takes the last match), read
    as `language` writes numbers (`NUMBER_BY_LANGUAGE`: "70.000" and "70 000" are 70000 in es and ru)."""
    matches = list(NUMBER_BY_LANGUAGE.get(language, NUMBER).finditer(ascii_digits(text)))
    if not matches:
        return None
    last = matches[-1].groupdict()
    return canonical_number(last["sign"] or "", last["whole"], last["fraction"] or last.get("decimal_comma") or "")


def score_math_answer(generation: str, answer: str, language: str = "en") -> bool:
    """Whether the last number of `generation`, written in `language`, equals the reference `answer` numerically
    ("18.0" == "18"). The reference is read as MGSM's answer column writes it in every language ("2,125")."""
    expected = extract_final_number(answer)
    if expected is None:
        raise ValueError(f"reference answer {answer!r} holds no number")
    predicted = extract_final_number(generation, language)
    return predicted is not None and Decimal(predicted) == Decimal(expected)


def truncate_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Cut `text` at the earliest occurrence of any (non-empty) stop sequence."""
    cuts = [text.find(sequence) for sequence in stop if sequence and sequence in text]
    return text[: min(cuts)] if cuts else text


def repeats_function(completion: str, entry_point: str) -> bool:
    """Whether the completion (after blank and import lines) starts with its own top-level `def entry_point(`."""
    for line in completion.lstrip().splitlines():
        if not line.strip() or line.startswith(("import ", "from ")):
            continue
        return bool(entry_point) and re.match(rf"def\s+{re.escape(entry_point)}\s*\(", line) is not None
    return False


def prompt_imports(prompt: str) -> str:
    """The top-level import lines of a prompt, for completions that restate the function without them."""
    return "".join(line for line in prompt.splitlines(keepends=True) if line.startswith(("import ", "from ")))


def reply_code(reply: str) -> str:
    """The code of a chat reply: its first fenced block (```python ... ```, closed or cut off), else the whole reply;
    cut before a `if __name__ ...` block or an "# Example usage" section, as the LoRA-Flow authors' scorer
    (UltraEval `humaneval_refine_post`) cuts it."""
    match = FENCED_CODE.search(reply)
    code = match.group("code") if match else reply
    return USAGE_SECTION.split(code, maxsplit=1)[0]


def code_solution(example: Example, completion: str) -> str:
    """The program that defines the completion's functions: the prompt (or the imports it needs), then the completion.

    A completion continues `example.prompt`; for a chat item (`code_context` set) it is a reply whose code (see
    `reply_code`) continues `code_context` instead, as the LoRA-Flow authors cut code out of their chat replies.
    """
    context = example.prompt
    if example.code_context is not None:
        context, completion = example.code_context, reply_code(completion)
    if repeats_function(completion, example.entry_point):
        return prompt_imports(context) + completion
    return context + completion


def checker_context(example: Example) -> str:
    """The prompt's own Python, which the tests may use (HumanEval/32's `poly`), for the checker to run before them:
    the prompt as it is, or closed with `pass` when it ends in a bare signature, else (not Python) its imports."""
    context = example.prompt if example.code_context is None else example.code_context
    for source in (context, f"{context}    pass\n"):
        try:
            compile(source, "context.py", "exec")
        except (SyntaxError, ValueError):
            continue
        return source
    return prompt_imports(context)


def checker_tests(example: Example) -> str:
    """The example's tests, then `check(<entry_point>)` if they define a HumanEval `check(candidate)`."""
    tests = example.test
    if CHECK_FUNCTION.search(tests):
        if not example.entry_point:
            raise ValueError(f"example {example.id!r}: a check(candidate) test needs an entry_point")
        tests += f"\n\ncheck({example.entry_point})\n"
    return tests


def score_code_completion(example: Example, completion: str, timeout_s: float = 10.0) -> bool:
    """Whether `completion` passes the example's tests: the tests run in a checker process of their own, where the
    entry point is a proxy that calls the completion's function in the sandbox and gets back plain data, so the
    completion can neither see the expected values nor fake a comparison (`tasks.sandbox.run_checked`)."""
    solution = code_solution(example, completion)
    tests = checker_tests(example)
    proxied = (example.entry_point,) if example.entry_point else ()
    return run_checked(solution, checker_context(example), tests, proxied, timeout_s=timeout_s).passed


def math_item_problem(example: Example) -> str | None:
    """Why a math test item cannot be scored (its `answer` holds no number, read as `score_math_answer` reads it)."""
    if not example.answer.strip():
        return "field 'answer' is missing or empty (a math test item is scored against its final number)"
    if extract_final_number(example.answer) is None:
        return f"field 'answer' is {example.answer!r}, which holds no number (a math test item is scored against it)"
    return None


def defines_name(code: str, name: str) -> bool:
    """Whether `code` (or `code` closed with `pass`, for a prompt ending in a bare signature) defines `name` at top
    level: a def, a class or an assignment."""
    for source in (code, f"{code}    pass\n"):
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        defined = [node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
        assigned = [target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets
                    if isinstance(target, ast.Name)]  # fmt: skip
        return name in defined + assigned
    return False


def runnable_tests_problem(test: str) -> str | None:
    """Why an item's `test` field cannot run: missing, or not Python."""
    if not test.strip():
        return "field 'test' is missing or empty (a code test item is scored by running its tests)"
    try:
        compile(test, "test", "exec")
    except SyntaxError as error:
        return f"field 'test' is not valid Python ({error.msg}, line {error.lineno} of the test)"
    except ValueError as error:  # null bytes
        return f"field 'test' is not valid Python ({error})"
    return None


def code_item_problem(example: Example) -> str | None:
    """Why a code test item could only score 0: tests that are missing or not Python, no entry point, an entry point
    that neither the prompt (or `code_context`) nor the reference `target` defines, or asserts that never call it."""
    entry_point = example.entry_point
    if problem := runnable_tests_problem(example.test):
        return problem
    if not entry_point:
        return "field 'entry_point' is missing (the name of the function the tests call)"
    if not entry_point.isidentifier() or keyword.iskeyword(entry_point):
        return f"field 'entry_point' is {entry_point!r}, not a Python name"
    if not defines_name(code_solution(example, example.target), entry_point):
        context = "prompt" if example.code_context is None else "code_context"
        return f"field 'entry_point' is {entry_point!r}, but neither field '{context}' nor field 'target' defines it"
    if not CHECK_FUNCTION.search(example.test) and not re.search(rf"\b{re.escape(entry_point)}\s*\(", example.test):
        return f"field 'test' never calls the entry point {entry_point!r} (asserts without `def check` must call it)"
    return None
