"""The built-in suite's data: math word problems, code tasks and general text in en/zh/ru/es from templates.

Pure Python and deterministic from the seed. Pools: "train", "dev", "test" (the composite cells' splits) and
"adapter" (skill adapters' English data and the oracle's composite data), disjoint by underlying problem.
"""

from tasks.builtin.code_problems import code_examples
from tasks.builtin.corpora import general_text, parallel_pairs
from tasks.builtin.math_problems import math_examples
from tasks.builtin.pools import LANGUAGES, POOL_CAPACITY, POOLS

# Part of the built-in suite's cache key: bump it whenever a change here alters any generated text.
GENERATOR_VERSION = "3"

__all__ = [
    "GENERATOR_VERSION", "LANGUAGES", "POOLS", "POOL_CAPACITY",
    "code_examples", "general_text", "math_examples", "parallel_pairs",
]  # fmt: skip
