"""Which underlying problems may appear in which split of the built-in suite.

Every generated item has a language-independent key (math: the operation structure and its numbers; code: the
family, its parameters and the docstring example, from which the hidden tests are derived). A stable hash of the key
assigns it to exactly one pool, so a test problem never shows up in train, dev or adapter data in any language, while
the same test problem may appear translated in several languages (as in MGSM).
"""

from __future__ import annotations

import hashlib
import random
from typing import Callable, Hashable

LANGUAGES = ("en", "zh", "ru", "es")
POOLS = ("train", "dev", "test", "adapter")

# Share of the key space each pool owns; "adapter" (the English skill adapters' data and the oracle's plentiful
# composite data) gets most of it.
POOL_SHARES = {"test": 0.15, "dev": 0.05, "train": 0.10, "adapter": 0.70}

# The most items one call may ask of a pool, per language. The key spaces are far larger; the caps keep the
# composite cells small, as in LoRA-Flow (train 200, dev 50, test a few hundred per cell).
POOL_CAPACITY = {"train": 1000, "dev": 1000, "test": 1000, "adapter": 20000}

# Which problem kinds (math: the chain of operations; code: the function family) a call may draw: "all", or one side
# of a fixed split of the kinds, for suites whose cells train on some kinds and are tested on the others. A kind is
# held out when a hash of its name falls in one third of the hash space: fixed before any result, tuned to none.
KIND_SPLITS = ("all", "held_out", "seen")
HELD_OUT_ONE_IN = 3


def stable_int(*parts: object) -> int:
    """A 64-bit integer from the parts' text, identical across runs and machines (unlike `hash`)."""
    text = "\x1f".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def key_digest(key: str) -> str:
    """A short hex name of a key, used in example ids (the same problem has the same digest in every language)."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]


def pool_of(key: str) -> str:
    """The pool that owns `key`: cumulative shares over a uniform number drawn from the key's hash."""
    position = stable_int("pool", key) / 2**64
    cumulative = 0.0
    for pool, share in POOL_SHARES.items():
        cumulative += share
        if position < cumulative:
            return pool
    return "adapter"


def check_language(language: str, valid: tuple[str, ...] = LANGUAGES) -> None:
    if language not in valid:
        raise ValueError(f"unknown language '{language}'; valid: {', '.join(valid)}")


def in_kind_split(task: str, kind: str, kinds: str) -> bool:
    """Whether problem `kind` of `task` belongs to the kind split `kinds` (see KIND_SPLITS)."""
    if kinds == "all":
        return True
    held_out = stable_int("held-out kind", task, kind) % HELD_OUT_ONE_IN == 0
    return held_out if kinds == "held_out" else not held_out


def check_request(language: str, pool: str, count: int, kinds: str = "all") -> None:
    """Reject an unknown language, pool or kind split, or a count the pool cannot supply."""
    check_language(language)
    if kinds not in KIND_SPLITS:
        raise ValueError(f"unknown kind split '{kinds}'; valid: {', '.join(KIND_SPLITS)}")
    if pool not in POOLS:
        raise ValueError(f"unknown pool '{pool}'; valid: {', '.join(POOLS)}")
    if not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    if count > POOL_CAPACITY[pool]:
        raise ValueError(f"pool '{pool}' supplies at most {POOL_CAPACITY[pool]} items per language; {count} requested")


def sample_pool_problems(
    task: str,
    pool: str,
    count: int,
    seed: int,
    draw: Callable[[random.Random], tuple[str, Hashable] | None],
    complete: Callable[[str, Hashable], Hashable | None] = lambda key, problem: problem,
    kinds: str = "all",
) -> list[tuple[str, Hashable]]:
    """Draw `count` problems with distinct keys owned by `pool`; `draw` proposes (key, problem) or None, a problem
    being a tuple whose first item is its kind, which must lie in the kind split `kinds`.

    `complete` finishes an accepted proposal (work too slow to spend on other pools' keys) or rejects it with None.
    The stream depends on (task, pool, seed) only, not on the language, so every language gets the same problems.
    """
    rng = random.Random(stable_int(task, pool, seed))
    chosen: list[tuple[str, Hashable]] = []
    seen: set[str] = set()
    attempts_left = 200 * count + 10_000
    while len(chosen) < count:
        if attempts_left == 0:
            raise ValueError(f"pool '{pool}' ran out of distinct {task} problems after {len(chosen)} of {count}")
        attempts_left -= 1
        proposal = draw(rng)
        if proposal is None:
            continue
        key, problem = proposal
        if key in seen or pool_of(key) != pool or not in_kind_split(task, problem[0], kinds):
            continue
        seen.add(key)
        problem = complete(key, problem)
        if problem is not None:
            chosen.append((key, problem))
    return chosen


def surface_rng(task: str, pool: str, seed: int, key: str) -> random.Random:
    """The generator of an item's wording choices (names, objects, template variants): language-independent."""
    return random.Random(stable_int(task, pool, seed, "surface", key))
