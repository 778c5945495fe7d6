"""Which HumanEval prompts keep their canonical solution working, found by running it after the prompt.

Machine translation reached the code of some of LoRA-Flow's ru/es HumanEval prompts: import lines and whole prompts
that are no longer Python, function names (`def truncar_numero`) and parameter names (`def f(numero)`, whose body
still reads `number`). After such a prompt the canonical solution fails, and so does any body a model writes; only a
reply that restates the whole function can pass. A prompt is sound when its canonical solution (the item's `target`),
run after it in the sandbox exactly as a completion is scored, passes the item's tests.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tasks.examples import Example
from tasks.scoring import score_code_completion

logger = logging.getLogger(__name__)
# "released": every item as the authors released it (what the paper evaluated); "sound": only the items whose
# canonical solution passes after their prompt.
HUMANEVAL_PROMPT_SETS = ("released", "sound")
CHECK_TIMEOUT_S = 10.0  # HumanEval's canonical solutions pass their tests in well under a second each
# Why a prompt breaks its canonical solution, in the order the log lists them. "failing tests": the function is
# there, but (in every such released ru/es prompt) its parameters were renamed, so the body's names are undefined.
BREAKAGE_REASONS = ("not valid Python", "renamed function", "failing tests")


def code_before_completion(example: Example) -> str:
    """The Python a completion runs after: the chat item's `code_context`, else the prompt itself."""
    return example.prompt if example.code_context is None else example.code_context


def defines_entry_point(code: str, entry_point: str) -> bool:
    """Whether `code` is Python that defines `entry_point` at top level (given any body)."""
    try:
        tree = ast.parse(code + "    pass\n")
    except SyntaxError:
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == entry_point for node in tree.body)


def breakage_reason(example: Example) -> str:
    """Why a prompt breaks its canonical solution, read from its code (the run already said that it does)."""
    code = code_before_completion(example)
    if defines_entry_point(code, example.entry_point):
        return "failing tests"
    try:
        ast.parse(code + "    pass\n")
    except SyntaxError:
        return "not valid Python"
    return "renamed function"  # valid Python, but no top-level `def <entry_point>`


def canonical_solution_breaks(examples: list[Example], timeout_s: float = CHECK_TIMEOUT_S) -> dict[str, str]:
    """Run every item's canonical solution after its prompt; the items where it fails, by id, with the reason."""
    with ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool:
        passed = list(pool.map(lambda example: score_code_completion(example, example.target, timeout_s), examples))
    return {example.id: breakage_reason(example) for example, ok in zip(examples, passed) if not ok}


def items_hash(examples: list[Example]) -> str:
    """A hash of everything the check runs, so a changed file (or loader) is checked again."""
    items = [[e.id, code_before_completion(e), e.target, e.test, e.entry_point] for e in examples]
    return hashlib.sha256(json.dumps(items, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def cached_canonical_solution_breaks(examples: list[Example], cache_dir: Path | None) -> dict[str, str]:
    """`canonical_solution_breaks`, kept in `<cache_dir>/humaneval-canonical/<hash>.json` (no cache when None)."""
    if cache_dir is None:
        return canonical_solution_breaks(examples)
    path = Path(cache_dir) / "humaneval-canonical" / f"{items_hash(examples)}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    breaks = canonical_solution_breaks(examples)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(f".{os.getpid()}.tmp")
    scratch.write_text(json.dumps(breaks, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(scratch, path)  # a killed run leaves no half-written verdicts
    return breaks


def select_humaneval_prompts(
    examples: list[Example], prompts: str, where: str, cache_dir: Path | None = None
) -> list[Example]:
    """The items as released, or with `prompts="sound"` only those whose canonical solution passes after their
    prompt; logs how many prompts break it and why. `where` names the split in the log."""
    if prompts not in HUMANEVAL_PROMPT_SETS:
        raise ValueError(f"humaneval_prompts: unknown value '{prompts}'; valid: {', '.join(HUMANEVAL_PROMPT_SETS)}")
    breaks = cached_canonical_solution_breaks(examples, cache_dir)
    sound = [example for example in examples if example.id not in breaks]
    if breaks:
        counts = Counter(breaks.values())
        reasons = ", ".join(f"{counts[reason]} {reason}" for reason in BREAKAGE_REASONS if counts[reason])
        broken = [example.id for example in examples if example.id in breaks]
        kept = "kept as released (humaneval_prompts='sound' drops them)"
        kept = "scoring only the sound ones" if prompts == "sound" else kept
        logger.warning("%s: %d of %d prompts break their canonical solution (%s; e.g. %s); %s",
                       where, len(breaks), len(examples), reasons, ", ".join(broken[:3]), kept)  # fmt: skip
    return sound if prompts == "sound" else examples
