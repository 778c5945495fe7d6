"""MGSM-style math word problems in en/zh/ru/es with language-neutral worked solutions.

The question names its operations with words of the language (buys more, gives away, boxes with ... in each, shares
equally, sells for ... each); the numbers are Arabic digits in every language, and the answer is a chain of
equations, e.g. " 12 + 7 = 19. 19 * 3 = 57. #### 57", so a model that only copies the numbers and guesses the
operation gets partial credit.
"""

from __future__ import annotations

import functools
import random

from tasks.builtin.languages import CONTAINER_IDS, LEXICONS, NAME_COUNT, OBJECT_IDS, PLACE_IDS
from tasks.builtin.number_words import spell_numbers
from tasks.builtin.pools import check_request, key_digest, sample_pool_problems, stable_int, surface_rng
from tasks.examples import Example

# With `english_gloss`, a reply opens with the task restated in English after this mark (a copy, for English items),
# then solves it: the translate-then-solve replies of the pivot-language line of work, where the restatement is a
# language adapter's work and the solution a skill adapter's.
GLOSS_MARK = "In English:"
OPERATION_SIGNS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}

# kind -> relative weight; a kind is its chain of operations, applied left to right: ((a op1 b) op2 c)
KIND_WEIGHTS = {
    "add": 3, "sub": 3, "mul": 3, "div": 3,
    "add_add": 1, "add_sub": 1, "sub_add": 1, "sub_sub": 1, "mul_add": 1, "mul_sub": 1,
    "add_div": 1, "sub_div": 1, "mul_div": 1, "add_mul": 1, "sub_mul": 1,
}  # fmt: skip


# Every step of every problem is a fact of this small table: a + b and a - b with a up to SUM_LIMIT and b in 2..9,
# a * b and a / b inside the 2..9 multiplication table. Measured: a 1M-parameter model learned a 564-fact table to
# 65 % in 600 steps, but only 8 % of the 2,900 facts the earlier ranges (operands up to 30, products plus 20) needed.
SUM_LIMIT = 30
DIGIT_MAX = 9  # the second operand of every step, and both factors of a product, are in 2..DIGIT_MAX


def _draw_numbers(kind: str, rng: random.Random) -> tuple[int, ...] | None:
    """Operands whose every step is a fact of the small table above (all intermediate results positive integers)."""
    r = rng.randint
    digit = lambda: r(2, DIGIT_MAX)  # noqa: E731
    if kind == "add":
        return r(2, 20), digit()
    if kind == "sub":
        b = digit()
        return r(b + 1, 20), b
    if kind == "mul":
        return digit(), digit()
    if kind == "div":
        divisor = digit()
        return divisor * digit(), divisor
    if kind in ("add_add", "add_sub", "sub_add", "sub_sub"):
        a, b, c = r(2, 20), digit(), digit()
        first = a + b if kind.startswith("add") else a - b
        second = first + c if kind.endswith("add") else first - c
        return (a, b, c) if 1 <= first <= SUM_LIMIT and 1 <= second <= SUM_LIMIT + DIGIT_MAX else None
    if kind in ("mul_add", "mul_sub"):
        a, b, c = digit(), digit(), digit()
        return (a, b, c) if a * b <= SUM_LIMIT and (kind == "mul_add" or a * b > c) else None
    if kind in ("add_div", "sub_div"):
        divisor, quotient, b = digit(), digit(), digit()
        total = divisor * quotient
        a = total - b if kind == "add_div" else total + b
        return (a, b, divisor) if 1 <= a <= SUM_LIMIT and total <= SUM_LIMIT else None
    if kind == "mul_div":
        a, b, divisor = digit(), digit(), digit()
        return (a, b, divisor) if a * b % divisor == 0 and 2 <= a * b // divisor <= DIGIT_MAX else None
    if kind in ("add_mul", "sub_mul"):
        a, b = r(2, 12), digit()
        first = a + b if kind == "add_mul" else a - b
        return (a, b, digit()) if 2 <= first <= DIGIT_MAX else None
    raise ValueError(f"unknown math problem kind '{kind}'")


def _draw_problem(rng: random.Random) -> tuple[str, tuple[str, tuple[int, ...]]] | None:
    kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
    numbers = _draw_numbers(kind, rng)
    if numbers is None:
        return None
    key = f"math|{kind}|" + ",".join(str(n) for n in numbers)
    return key, (kind, numbers)


def worked_solution(kind: str, numbers: tuple[int, ...]) -> tuple[str, int]:
    """The language-neutral solution ("12 + 7 = 19. 19 - 3 = 16. #### 16") and the final number."""
    value, steps = numbers[0], []
    for operation, operand in zip(kind.split("_"), numbers[1:]):
        if operation == "add":
            result = value + operand
        elif operation == "sub":
            result = value - operand
        elif operation == "mul":
            result = value * operand
        else:
            result = value // operand
        steps.append(f"{value} {OPERATION_SIGNS[operation]} {operand} = {result}.")
        value = result
    return " ".join(steps) + f" #### {value}", value


def story_clauses(kind: str, numbers: tuple[int, ...], sells: bool) -> list[tuple[str, tuple[int, ...]]]:
    """The clauses telling the problem, each with the numbers it states.

    A first multiplication is told as boxes with so many in each (or, for a one-step product with `sells`, as
    selling at a price); a later one always as selling; a division as sharing equally.
    """
    operations = kind.split("_")
    if kind == "mul" and sells:
        return [("have", (numbers[0],)), ("sell_ask", (numbers[1],))]
    if operations[0] == "mul":
        clauses, rest = [("boxes", numbers[:2])], list(zip(operations[1:], numbers[2:]))
    else:
        clauses, rest = [("have", numbers[:1])], list(zip(operations, numbers[1:]))
    step_clause = {"add": "more", "sub": "less", "mul": "sell_ask", "div": "share_ask"}
    clauses += [(step_clause[operation], (operand,)) for operation, operand in rest]
    if clauses[-1][0] not in ("sell_ask", "share_ask"):
        clauses.append(("ask_all" if kind == "mul" else "ask_now", ()))
    return clauses


def _choose_surface(rng: random.Random) -> dict:
    """Wording choices shared by all languages, so one problem reads the same in each of them."""
    person = (rng.choice("fm"), rng.randrange(NAME_COUNT))
    friend = (rng.choice("fm"), rng.randrange(NAME_COUNT))
    if friend == person:
        friend = (friend[0], (friend[1] + 1) % NAME_COUNT)
    return {
        "person": person,
        "friend": friend,
        "object_id": rng.choice(OBJECT_IDS),
        "container_id": rng.choice(CONTAINER_IDS),
        "place_id": rng.choice(PLACE_IDS),
        "variants": [rng.randrange(1000) for _ in range(4)],
        "sells": rng.random() < 0.5,
    }


def clause_slots(lexicon, clause: str, numbers: tuple[int, ...], object_id: str, container_id: str) -> dict:
    """The number-bearing words of one clause: {n}, {q} (number with the object noun), {boxes}, {coins}."""
    if clause == "boxes":
        containers, count = numbers
        return {
            "boxes": lexicon.counted(containers, container_id),
            "boxes_acc": lexicon.counted(containers, container_id, "acc"),
            "n": count,
            "q": lexicon.counted(count, object_id),
            "q_acc": lexicon.counted(count, object_id, "acc"),
        }
    if not numbers:
        return {}
    (n,) = numbers
    return {
        "n": n,
        "q": lexicon.counted(n, object_id),
        "q_acc": lexicon.counted(n, object_id, "acc"),
        "coins": lexicon.counted(n, "coin"),
    }


def render_question(language: str, clauses: list[tuple[str, tuple[int, ...]]], surface: dict) -> str:
    """The clauses written out in `language` with the chosen names, objects and template variants."""
    lexicon = LEXICONS[language]
    words = lexicon.slots(
        surface["person"], surface["friend"], surface["object_id"], surface["container_id"], surface["place_id"]
    )
    sentences, used = [], set()
    for position, (clause, numbers) in enumerate(clauses):
        templates = lexicon.MATH_CLAUSES[clause]
        variant = surface["variants"][position] % len(templates)
        if (clause, variant) in used:  # "buys 4 more ... buys 31 more" reads badly: vary the second one
            variant = (variant + 1) % len(templates)
        used.add((clause, variant))
        template = templates[variant]
        numbered = clause_slots(lexicon, clause, numbers, surface["object_id"], surface["container_id"])
        sentences.append(template.format(**words, **numbered))
    return lexicon.SENTENCE_SEPARATOR.join(sentences)


@functools.lru_cache(maxsize=64)
def _pool_problems(pool: str, count: int, seed: int, kinds: str = "all") -> tuple:
    return tuple(sample_pool_problems("math", pool, count, seed, _draw_problem, kinds=kinds))


def math_questions(
    language: str, pool: str, count: int, seed: int, kinds: str = "all"
) -> list[tuple[str, str, tuple[int, ...], str]]:
    """(key, kind, numbers, question text) of `count` problems of `pool` whose kind is in the split `kinds`
    (tasks/builtin/pools.py KIND_SPLITS), the question written in `language`.

    The same (pool, count, seed, kinds) gives the same problems in every language, translated.
    """
    check_request(language, pool, count, kinds)
    questions = []
    for key, (kind, numbers) in _pool_problems(pool, count, seed, kinds):
        surface = _choose_surface(surface_rng("math", pool, seed, key))
        clauses = story_clauses(kind, numbers, surface["sells"])
        questions.append((key, kind, numbers, render_question(language, clauses, surface)))
    return questions


def math_examples(
    language: str, pool: str, count: int, seed: int, number_words: bool = False, english_gloss: bool = False,
    kinds: str = "all",
) -> list[Example]:
    """`count` math word problems in `language` from `pool` ("train", "dev", "test" or "adapter"), of the kinds in
    `kinds`, with solutions; with `number_words`, the question writes its numbers as words of the language (the
    solution keeps digits); with `english_gloss`, the reply first restates the question in English (`GLOSS_MARK`)."""
    examples = []
    english = math_questions("en", pool, count, seed, kinds) if english_gloss else None
    for index, (key, kind, numbers, question) in enumerate(math_questions(language, pool, count, seed, kinds)):
        solution, answer = worked_solution(kind, numbers)
        if number_words:
            question = spell_numbers(question, language)
        target = f" {GLOSS_MARK} {english[index][-1]}\nSolution: {solution}" if english_gloss else " " + solution
        examples.append(
            Example(
                id=f"math-{language}-{pool}-{kind}-{key_digest(key)}",
                prompt=f"Question: {question}\nAnswer:",
                target=target,
                answer=str(answer),
            )
        )
    return examples


def arithmetic_facts(count: int, seed: int, facts_per_line: int = 8) -> list[str]:
    """`count` lines of single arithmetic facts ("7 + 5 = 12. 6 * 3 = 18. ..."), language-neutral general knowledge.

    Each fact is one step of a random problem of the kinds above (any pool: a fact is a line of the addition or
    multiplication table, never a question, a chain of steps or an answer's "####"), so the facts the word problems
    need are the ones drilled; a line's facts are shuffled, so no line holds a problem's chain of steps.
    """
    rng = random.Random(stable_int("facts", seed))
    lines = []
    for _ in range(count):
        facts: list[str] = []
        while len(facts) < facts_per_line:
            kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
            numbers = _draw_numbers(kind, rng)
            if numbers is not None:
                steps = worked_solution(kind, numbers)[0].split(" #### ")[0]  # "12 - 2 = 10. 10 + 9 = 19."
                facts += [step.rstrip(".") + "." for step in steps.split(". ")]
        rng.shuffle(facts)
        lines.append(" ".join(facts))
    return lines
