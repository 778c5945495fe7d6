"""The unit of data every task, scorer and method shares: one prompt with its reference completion."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Example:
    """One item of a task cell.

    `prompt` is exactly what the model is given; `target` is the reference completion a trainer appends to it
    (a worked solution for math, a function body for code). `answer` is the final number (math); `test` is code that
    checks a completion (code: a `check(candidate)` function, or MBPP-style assert lines) and `entry_point` the name
    of the function under test. `code_context` is for code items whose prompt is a chat message rather than Python:
    the Python the reply's code is run after (a HumanEval prompt; "" for MBPP); None when the prompt itself is that
    Python and the completion continues it.
    """

    id: str
    prompt: str
    target: str
    answer: str = ""
    test: str = ""
    entry_point: str = ""
    code_context: str | None = None


EXAMPLE_FIELDS = tuple(field.name for field in dataclasses.fields(Example))


def read_jsonl_records(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file (gzip if it ends in .gz)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    records = []
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{line_number}: expected a JSON object")
        records.append((line_number, record))
    return records


def _example_from_record(path: Path, line_number: int, record: dict) -> Example:
    for field in ("id", "prompt", "target"):
        if not isinstance(record.get(field), str):
            raise ValueError(f"{path}:{line_number}: field '{field}' is missing or not a string")
    unknown = set(record) - set(EXAMPLE_FIELDS)
    if unknown:
        raise ValueError(f"{path}:{line_number}: unknown field(s) {sorted(unknown)}")
    return Example(**record)


def read_examples(path: Path) -> list[Example]:
    """Read a JSONL file of examples, naming the file, line and field at fault on bad input."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: task data file not found")
    examples = [_example_from_record(path, line_number, record) for line_number, record in read_jsonl_records(path)]
    duplicates = sorted(identifier for identifier, count in Counter(e.id for e in examples).items() if count > 1)
    if duplicates:
        raise ValueError(f"{path}: duplicate example id(s) {duplicates[:5]}")
    return examples


def read_training_examples(path: Path, prefix: str) -> list[Example]:
    """An adapter's training data: JSONL lines that are `Example`s, or `{"text": ...}` (raw text, all of it target)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: training data file not found")
    examples = []
    for line_number, record in read_jsonl_records(path):
        if "text" not in record:
            examples.append(_example_from_record(path, line_number, record))
        elif set(record) != {"text"} or not isinstance(record["text"], str):
            raise ValueError(f"{path}:{line_number}: a text line is {{\"text\": \"...\"}} and nothing else")
        else:
            examples.append(Example(id=f"{prefix}-{line_number}", prompt="", target=record["text"]))
    if not examples:
        raise ValueError(f"{path}: no training examples")
    return examples


def leaked_ids(test: list[Example], training: list[Example]) -> list[str]:
    """Ids of test items that also appear in `training`, by id or by (non-empty) prompt text."""
    seen_ids = {example.id for example in training}
    seen_prompts = {example.prompt for example in training if example.prompt}
    return [example.id for example in test if example.id in seen_ids or example.prompt in seen_prompts]


def write_examples(path: Path, examples: list[Example]) -> None:
    """Write examples as JSONL (one object per line, stable key order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(dataclasses.asdict(example), ensure_ascii=False) for example in examples]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def text_examples(texts: list[str], prefix: str) -> list[Example]:
    """Plain text as examples whose whole text is the target (language-model training on raw text)."""
    return [Example(id=f"{prefix}-{index}", prompt="", target=text) for index, text in enumerate(texts)]
