"""HumanEval-style function-writing tasks whose docstrings are in en/zh/ru/es.

The prompt is a signature and a docstring: one sentence in the language saying what to return, then one doctest
example (a language-neutral hint). The target is the body; `test` is a `check(candidate)` with the example and
hidden cases, chosen so that the body of every other family (and of the same family with a neighbouring constant)
fails at least one of them.
"""

from __future__ import annotations

import functools
import json
import marshal
import random
from typing import Callable

from tasks.builtin.code_families import FAMILIES, FAMILIES_BY_ID, Family
from tasks.builtin.languages import LEXICONS
from tasks.builtin.math_problems import GLOSS_MARK
from tasks.builtin.number_words import spell_numbers
from tasks.builtin.pools import check_request, key_digest, sample_pool_problems, stable_int, surface_rng
from tasks.examples import Example

# Mildly generic names, so the docstring rather than the name says what to write.
FUNCTION_NAMES = ("solve", "compute", "process", "transform", "f", "calculate", "handle", "run", "apply_rule", "task")
RANDOM_INPUTS_PER_TEST = 4  # hidden cases besides the docstring example and the family's edge cases
HIDDEN_INPUT_ATTEMPTS = 20  # redraws of the hidden cases before a key is given up as indistinguishable

Params = tuple[tuple[str, object], ...]  # a family's parameters as sorted (name, value) pairs, hashable


def body_source(family: Family, params: Params) -> str:
    """The reference body, indented by four spaces and ending in a newline."""
    body = family.body.format(**dict(params))
    return "".join(f"    {line}\n" for line in body.splitlines())


@functools.lru_cache(maxsize=None)
def _compiled(argument: str, body: str) -> Callable:
    # Our own reference bodies, compiled in-process; model-generated code never comes through here.
    namespace: dict = {}
    exec(f"def reference({argument}):\n{body}", namespace)
    return namespace["reference"]


def reference_function(family: Family, params: Params) -> Callable:
    return _compiled(family.argument, body_source(family, params))


def _outputs(function: Callable, inputs: list) -> list | None:
    """The function's results on copies of `inputs`, or None if any call fails. The inputs are our own plain data
    (ints, strings and lists of them), which marshal copies exactly, and about 10 times faster than `copy.deepcopy`:
    generating the suites' code problems took 12 s of each run with it."""
    copies = marshal.loads(marshal.dumps(inputs))  # outside the `try`: a value marshal cannot copy is our bug
    try:
        return [function(value) for value in copies]
    except Exception:
        return None


@functools.lru_cache(maxsize=None)
def _rivals(family_id: str, params: Params) -> tuple[Callable, ...]:
    """Bodies the hidden tests must reject: every other family on the same argument (with these parameters when it
    takes them, else its first ones) and this family with the neighbouring parameters."""
    family = FAMILIES_BY_ID[family_id]
    rivals = []
    for other in FAMILIES:
        if other.id == family.id or other.argument != family.argument:
            continue
        other_params = dict(params) if dict(params) in other.params else other.params[0]
        rivals.append(reference_function(other, tuple(sorted(other_params.items()))))
    position = family.params.index(dict(params))
    for neighbour in (position - 1, position + 1):
        if 0 <= neighbour < len(family.params):
            rivals.append(reference_function(family, tuple(sorted(family.params[neighbour].items()))))
    return tuple(rivals)


def hidden_tests(family: Family, params: Params, example: object, key: str) -> tuple[list, list] | None:
    """Inputs (the example first) and expected outputs that tell this body apart from every rival, or None
    when the example is uninformative or no draw of hidden cases separates the rivals."""
    reference = reference_function(family, params)
    if _outputs(reference, [example]) == [example]:
        return None  # an example the function leaves unchanged ([1, 2] -> [1, 2]) hints at nothing
    for attempt in range(HIDDEN_INPUT_ATTEMPTS):
        rng = random.Random(stable_int(key, "hidden", attempt))
        inputs = [example]
        for value in [*family.edge_inputs, *(family.sample_input(rng) for _ in range(RANDOM_INPUTS_PER_TEST))]:
            if value not in inputs:
                inputs.append(value)
        expected = _outputs(reference, inputs)
        if expected is None:
            return None
        if all(_outputs(rival, inputs) != expected for rival in _rivals(family.id, params)):
            return inputs, expected
    return None


def _draw_problem(rng: random.Random) -> tuple[str, tuple] | None:
    family = rng.choice(FAMILIES)
    params = tuple(sorted(rng.choice(family.params).items()))
    example = family.sample_input(rng)
    key = f"code|{family.id}|{json.dumps(dict(params), sort_keys=True)}|{example!r}"
    return key, (family.id, params, example)


def _complete_problem(key: str, problem: tuple) -> tuple | None:
    family_id, params, example = problem
    tests = hidden_tests(FAMILIES_BY_ID[family_id], params, example, key)
    return None if tests is None else (family_id, params, tests[0], tests[1])


@functools.lru_cache(maxsize=64)
def _pool_problems(pool: str, count: int, seed: int, kinds: str = "all") -> tuple:
    return tuple(sample_pool_problems("code", pool, count, seed, _draw_problem, _complete_problem, kinds))


def code_cases(pool: str, count: int, seed: int) -> list[tuple[str, Params, list, list]]:
    """(family id, parameters, inputs, expected outputs) of `count` problems of `pool`, in no language and with no
    code: what each problem's function does."""
    return [problem for _, problem in _pool_problems(pool, count, seed)]


def render_prompt(
    language: str, name: str, family: Family, params: Params, example: object, output: object, number_words: bool = False
) -> str:
    """Signature plus docstring: the family's sentence in `language` (its numbers as words with `number_words`), then
    one doctest example."""
    phrase = LEXICONS[language].CODE_PHRASES[family.id].format(**dict(params))
    if number_words:
        phrase = spell_numbers(phrase, language)
    return (
        f"def {name}({family.argument}):\n"
        f'    """{phrase}\n'
        f"    >>> {name}({example!r})\n"
        f"    {output!r}\n"
        f'    """\n'
    )


def render_check(inputs: list, outputs: list) -> str:
    """A HumanEval-style `check(candidate)` asserting every case."""
    asserts = "".join(f"    assert candidate({value!r}) == {result!r}\n" for value, result in zip(inputs, outputs))
    return "def check(candidate):\n" + asserts


def _function_name(rng: random.Random) -> str:
    if rng.random() < 0.3:
        return f"task_{rng.randint(1, 99)}"
    return rng.choice(FUNCTION_NAMES)


def _gloss_comment(family: Family, params: Params) -> str:
    return f"    # {GLOSS_MARK} {LEXICONS['en'].CODE_PHRASES[family.id].format(**dict(params))}\n"


def code_examples(
    language: str, pool: str, count: int, seed: int, number_words: bool = False, english_gloss: bool = False,
    kinds: str = "all",
) -> list[Example]:
    """`count` function-writing tasks with docstrings in `language` from `pool` ("train", "dev", "test", "adapter"),
    of the families in the kind split `kinds` (tasks/builtin/pools.py KIND_SPLITS);
    with `number_words`, the docstring's sentence writes its numbers as words of the language; with `english_gloss`,
    the body opens with a comment restating the docstring's sentence in English (`GLOSS_MARK`).

    The same (pool, count, seed) gives the same tasks in every language, translated.
    """
    check_request(language, pool, count, kinds)
    examples = []
    for key, (family_id, params, inputs, outputs) in _pool_problems(pool, count, seed, kinds):
        family = FAMILIES_BY_ID[family_id]
        name = _function_name(surface_rng("code", pool, seed, key))
        examples.append(
            Example(
                id=f"code-{language}-{pool}-{family_id}-{key_digest(key)}",
                prompt=render_prompt(language, name, family, params, inputs[0], outputs[0], number_words),
                target=_gloss_comment(family, params) * english_gloss + body_source(family, params),
                test=render_check(inputs, outputs),
                entry_point=name,
            )
        )
    return examples
