"""Word lists and templates of the built-in suite, one module per language.

Every language module exposes the same names, aligned by id or by index so that one choice of ids renders the same
sentence in every language (which is what makes the parallel pairs and the translated test items faithful):

- `NAMES`: {"f": (...), "m": (...)}, `NAME_COUNT` names per gender;
- `slots(person, friend, object_id, container_id, place_id) -> dict`: the word forms templates refer to;
- `counted(n, noun_id, case="nom") -> str`: a number with its noun in the right form ("5 apples", "5个苹果", "5 яблок");
- `MATH_CLAUSES[clause]`: tuples of templates, the same length in every language;
- `CODE_PHRASES[family]`: one docstring sentence per code family;
- `GENERAL_SENTENCES`: plain narrative sentences, the same length in every language.
- `SENTENCE_SEPARATOR`: what joins the sentences of one text ("" in Chinese, " " elsewhere).
"""

from __future__ import annotations

from types import ModuleType

from tasks.builtin.languages import en, es, ru, zh

LEXICONS: dict[str, ModuleType] = {"en": en, "zh": zh, "ru": ru, "es": es}

NAME_COUNT = 8
OBJECT_IDS = ("apple", "pencil", "book", "cookie", "flower", "stamp", "marble", "card", "orange", "candy")
CONTAINER_IDS = ("box", "bag", "basket")
PLACE_IDS = ("shop", "park", "school", "garden", "library")
COIN_ID = "coin"
