"""Tasks by name: what a cell's examples are scored with and how long an answer may be.

A task is a skill (`math`, `code`); a suite supplies its examples per language, so a cell is (task, language).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from tasks.examples import Example
from tasks.scoring import score_code_completion, score_math_answer

COMPOSITE_LANGUAGES = ("zh", "ru", "es")  # the LoRA-Flow paper's cells
ALL_LANGUAGES = ("en", "zh", "ru", "es")


@dataclass(frozen=True)
class TaskSpec:
    """How a task's generations are produced and scored."""

    name: str
    metric: str
    score: Callable[..., bool]  # (example, completion, language="en") -> correct; see `scorer_for`
    max_new_tokens: int
    stop: tuple[str, ...]
    # Raised whenever the scorer's verdicts can change, so that cells scored by an older scorer are rescored.
    scorer_version: str = "1"

    def scorer_for(self, language: str) -> Callable[[Example, str], bool]:
        """The scorer of the task's cell in `language`: math reads numbers as that language writes them."""
        return functools.partial(self.score, language=language)


def _score_math(example: Example, completion: str, language: str = "en") -> bool:
    return score_math_answer(completion, example.answer, language)


def _score_code(example: Example, completion: str, language: str = "en") -> bool:
    return score_code_completion(example, completion)  # code is Python in every language


TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Make a task available to suites and the CLI under `spec.name`."""
    TASKS[spec.name] = spec
    return spec


# MGSM accuracy: the last number of the generation against the gold answer (as lm-eval's mgsm tasks score it).
register_task(TaskSpec(name="math", metric="accuracy", score=_score_math, max_new_tokens=256, stop=("\n\n\n", "Question:")))
# HumanEval pass@1 with greedy decoding; the stop words are HumanEval's own (a new top-level statement ends the body).
register_task(
    TaskSpec(
        name="code",
        metric="pass@1",
        score=_score_code,
        max_new_tokens=384,
        stop=("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert "),
    )
)


def resolve_names(option: str, spec: str, valid: tuple[str, ...]) -> list[str]:
    """Split a comma list and check every name against `valid`, naming the option at fault."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    for name in names:
        if name not in valid:
            raise ValueError(f"{option}: unknown name '{name}'; valid: {', '.join(valid)}")
    if not names:
        raise ValueError(f"{option}: nothing given; valid: {', '.join(valid)}")
    return names
