"""The unit of data every task, scorer and method shares: one prompt with its reference completion."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


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


def decode_utf8(data: bytes, path: Path) -> str:
    """`data` as UTF-8 text; a ValueError naming the file, line and column of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - data.rfind(b"\n", 0, error.start)
        raise ValueError(
            f"{path}:{line}: not UTF-8 (byte 0x{data[error.start]:02x} at column {column}); save the file as UTF-8"
        ) from None


def parse_json(text: str, where: str) -> object:
    """`json.loads(text)`; a ValueError naming `where` when it is not JSON or is nested too deeply to read."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: not valid JSON ({error.msg})") from None
    except RecursionError:  # json's decoder recurses once per level: "[[[[..." past the recursion limit
        raise ValueError(f"{where}: nested too deeply to read (more than {sys.getrecursionlimit()} levels)") from None


def read_json_file(path: Path) -> object:
    """The value in a JSON file; a ValueError naming the file when it is not UTF-8, not JSON or nested too deeply."""
    return parse_json(decode_utf8(Path(path).read_bytes(), path), str(path))


def read_text_file(path: Path) -> str:
    """A UTF-8 text file (gzip if it ends in .gz), with errors naming the file."""
    if path.suffix != ".gz":
        return decode_utf8(path.read_bytes(), path)
    try:
        with gzip.open(path, "rb") as handle:
            return decode_utf8(handle.read(), path)
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError; a cut-off file ends in EOFError
        raise ValueError(f"{path}: not a readable gzip file ({error})") from None


def read_jsonl_records(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSONL file (gzip if it ends in .gz)."""
    records = []
    # Lines end at "\n" only: str.splitlines would also cut at U+2028 and other separators inside JSON strings.
    for line_number, line in enumerate(read_text_file(path).split("\n"), start=1):
        if not line.strip():
            continue
        record = parse_json(line, f"{path}:{line_number}")
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
    for field in ("answer", "test", "entry_point"):
        if not isinstance(record.get(field, ""), str):
            raise ValueError(f"{path}:{line_number}: field '{field}' must be a string, not {record[field]!r}")
    if not isinstance(record.get("code_context"), (str, type(None))):
        raise ValueError(f"{path}:{line_number}: field 'code_context' must be a string or null")
    return Example(**record)


def read_examples(path: Path, check: Callable[[Example], str | None] | None = None) -> list[Example]:
    """Read a JSONL file of examples, naming the file, line and field at fault on bad input; `check` returns why an
    example cannot be used (naming its field), or None."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: task data file not found")
    examples = []
    for line_number, record in read_jsonl_records(path):
        example = _example_from_record(path, line_number, record)
        problem = check(example) if check else None
        if problem:
            raise ValueError(f"{path}:{line_number}: {problem}")
        examples.append(example)
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
    replace_text(path, "\n".join(lines) + "\n")


def replace_text(path: Path, text: str) -> None:
    """Write `text` beside `path`, then rename it over `path`: a process reading `path` meanwhile (another process of
    the same launch) sees the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def text_examples(texts: list[str], prefix: str) -> list[Example]:
    """Plain text as examples whose whole text is the target (language-model training on raw text)."""
    return [Example(id=f"{prefix}-{index}", prompt="", target=text) for index, text in enumerate(texts)]
