"""A catalogue of bad inputs: each fails at once with one line naming the file, field or option at fault."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from tests.conftest import record_figure, random_lora, tiny_llama


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def adapter_for_another_base(suite: Path) -> None:
    edit_json(suite / "zoo/language_zh/adapter_config.json", lambda c: c.update(base_model_name_or_path="other/model"))


def adapter_with_wrong_shapes(suite: Path) -> None:
    shutil.rmtree(suite / "zoo/language_zh")
    random_lora(tiny_llama(300, hidden=48), suite / "zoo/language_zh", seed=9)


def adapter_for_missing_module(suite: Path) -> None:
    from safetensors.torch import load_file, save_file

    path = suite / "zoo/language_zh/adapter_model.safetensors"
    tensors = {key.replace("q_proj", "qq_proj"): value for key, value in load_file(str(path)).items()}
    save_file(tensors, str(path))


def pickle_only_adapter(suite: Path) -> None:
    weights = suite / "zoo/language_zh/adapter_model.safetensors"
    weights.rename(weights.with_name("adapter_model.bin"))


def first_line_of(path: Path, text: str) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join([text] + lines[1:]) + "\n")


def edit_adapter_tensors(suite: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    path = suite / "zoo/language_zh/adapter_model.safetensors"
    save_file({key: change(key, value).contiguous() for key, value in load_file(str(path)).items()}, str(path))


def adapter_of_rank_zero(suite: Path) -> None:
    edit_adapter_tensors(suite, lambda key, value: value[:0] if "lora_A" in key else value[:, :0])


def adapter_with_a_nan(suite: Path) -> None:
    def poison(key, value):
        if key.endswith("layers.1.mlp.down_proj.lora_B.weight"):
            value = value.clone()
            value[0, 0] = float("nan")
        return value

    edit_adapter_tensors(suite, poison)


def model_smaller_than_the_tokenizer(suite: Path) -> None:
    tiny_llama(200).save_pretrained(suite / "model")  # the tokenizer has 300 tokens


def tokenizer_without_eos(suite: Path) -> None:
    edit_json(suite / "model/tokenizer_config.json", lambda config: config.update(eos_token=None))


def model_folder_without_tokenizer(suite: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (suite / "model" / name).unlink(missing_ok=True)


def leak_into_the_test_file(suite: Path, split: str, field: str) -> None:
    """The test file's first item takes the `field` (id or prompt) of the second item of `split`."""
    leaked = json.loads((suite / f"data/math_zh_{split}.jsonl").read_text().splitlines()[1])
    test_item = json.loads((suite / DATA).read_text().splitlines()[0])
    first_line_of(suite / DATA, json.dumps({**test_item, field: leaked[field]}))


GOOD_CODE_ITEM = {"id": "code-0", "prompt": "def add(a, b):\n", "target": "    return a + b\n",
                  "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n", "entry_point": "add"}  # fmt: skip
MBPP_ITEM = {"id": "code-1", "prompt": '"""Add two numbers."""\n', "target": "def add(a, b):\n    return a + b\n",
             "test": "assert add(1, 2) == 3", "entry_point": "add"}  # fmt: skip


def code_cell_with(**second_item):
    """A corruption: a code/zh cell in suite.json whose second test item (line 2) is `second_item` over a good one."""

    def corrupt(suite: Path) -> None:
        base = MBPP_ITEM if "test" in second_item and "check" not in second_item["test"] else GOOD_CODE_ITEM
        items = {"train": [{"id": "t0", "prompt": "def one():\n", "target": "    return 1\n"}],
                 "dev": [{"id": "d0", "prompt": "def two():\n", "target": "    return 2\n"}],
                 "test": [GOOD_CODE_ITEM, {**base, "id": "code-1", **second_item}]}  # fmt: skip
        for split, records in items.items():
            (suite / f"data/code_zh_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        files = {split: f"data/code_zh_{split}.jsonl" for split in items}
        edit_json(suite / "suite.json", lambda spec: spec["tasks"].update(code={"zh": files}))

    return corrupt


def symlink_loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


DATA = "data/math_zh_test.jsonl"
CASES = {
    "adapter for another base model": (adapter_for_another_base, [], "was trained for base model 'other/model', not 'tiny-random-llama'; if they are the same model, set `base_model_id` in suite.json"),
    "rank or shape mismatch": (adapter_with_wrong_shapes, [], "features but the base layer maps"),
    "module missing in the base": (adapter_for_missing_module, [], "does not exist in the base model"),
    "missing adapter_config.json": (lambda s: (s / "zoo/language_zh/adapter_config.json").unlink(), [], "adapter_config.json not found"),
    "corrupt safetensors": (lambda s: (s / "zoo/language_zh/adapter_model.safetensors").write_bytes(b"\x00garbage"), [], "not a readable safetensors file"),
    "pickle-only .bin adapter": (pickle_only_adapter, [], "pickle files are refused"),
    "missing zoo manifest": (lambda s: (s / "zoo/zoo.json").unlink(), [], "zoo manifest not found"),
    "malformed zoo manifest": (lambda s: (s / "zoo/zoo.json").write_text("{"), [], "zoo.json: not valid JSON"),
    "bad adapter role": (lambda s: edit_json(s / "zoo/zoo.json", lambda z: z["adapters"][0].update(role="style")), [], "field 'role' is 'style'"),
    "zoo for another base model": (lambda s: edit_json(s / "zoo/zoo.json", lambda z: z.update(base_model="x")), [], "zoo is for base model 'x', not 'tiny-random-llama'; if they are the same model, set `base_model_id` in suite.json to 'x'"),
    "zoo.json that is an array": (lambda s: (s / "zoo/zoo.json").write_text("[]"), [], "zoo.json: must be a JSON object"),
    "zoo entry with a number for a language": (lambda s: edit_json(s / "zoo/zoo.json", lambda z: z["adapters"][0].update(language=5)), [], "adapters[0]: field 'language' must be a string"),
    "zoo entry data file missing": (lambda s: edit_json(s / "zoo/zoo.json", lambda z: z["adapters"][0].update(data="nope.jsonl")), [], "nope.jsonl: training data file not found"),
    "adapter tensors of rank 0": (adapter_of_rank_zero, [], "has rank 0"),
    "adapter_config.json that is an array": (lambda s: (s / "zoo/language_zh/adapter_config.json").write_text("[]"), [], "adapter_config.json must be a JSON object"),
    "adapter tensor holding NaN": (adapter_with_a_nan, [], "tensor 'base_model.model.model.layers.1.mlp.down_proj.lora_B.weight' in"),
    "adapter with lora_alpha 0": (lambda s: edit_json(s / "zoo/language_zh/adapter_config.json", lambda c: c.update(lora_alpha=0)), [], "lora_alpha 0"),
    "tokenizer larger than the model's vocabulary": (model_smaller_than_the_tokenizer, [], "the tokenizer has 300 tokens but the model in"),
    "tokenizer without an eos token": (tokenizer_without_eos, [], "model: the tokenizer has no `eos_token`"),
    "model folder without a tokenizer": (model_folder_without_tokenizer, [], "model: no tokenizer here"),
    "suite.json that is an array": (lambda s: (s / "suite.json").write_text("[1, 2]"), [], "suite.json: must be a JSON object"),
    "suite.json that is a string": (lambda s: (s / "suite.json").write_text('"suite"'), [], "suite.json: must be a JSON object"),
    "suite.json with an unknown field": (lambda s: edit_json(s / "suite.json", lambda j: j.update(tokeniser="t")), [], "unknown field(s) ['tokeniser']"),
    "tasks.math that is a list": (lambda s: edit_json(s / "suite.json", lambda j: j["tasks"].update(math=[])), [], "tasks.math must be an object"),
    "max_new_tokens.math that is a string": (lambda s: edit_json(s / "suite.json", lambda j: j["max_new_tokens"].update(math="6")), [], "max_new_tokens.math must be a positive integer, not '6'"),
    "test item with a dev item's id": (lambda s: leak_into_the_test_file(s, "dev", "id"), [], "test item(s) ['zh-dev-1'] (1 in all) also appear in the dev split"),
    "test item with a train item's prompt": (lambda s: leak_into_the_test_file(s, "train", "prompt"), [], "test item(s) ['zh-test-0'] (1 in all) also appear in the train split"),
    "malformed data line": (lambda s: first_line_of(s / DATA, "{not json"), [], "math_zh_test.jsonl:1: not valid JSON"),
    "missing data field": (lambda s: first_line_of(s / DATA, '{"id": "a", "target": "1"}'), [], "field 'prompt' is missing"),
    "duplicate example ids": (lambda s: first_line_of(s / DATA, (s / DATA).read_text().splitlines()[1]), [], "duplicate example id"),
    "empty test file": (lambda s: (s / DATA).write_text(""), [], "no examples (math/zh test split)"),
    "zero training examples": (lambda s: (s / "data/math_zh_train.jsonl").write_text("\n"), [], "no examples (math/zh train split)"),
    "missing data file": (lambda s: (s / DATA).unlink(), [], "task data file not found"),
    "suite.json without zoo": (lambda s: edit_json(s / "suite.json", lambda j: j.pop("zoo")), [], "field 'zoo' is missing"),
    "suite.json with unknown task": (lambda s: edit_json(s / "suite.json", lambda j: j["tasks"].update(poetry={})), [], "tasks.poetry: unknown task"),
    "cell the suite lacks": (lambda s: None, ["--langs", "ru"], "has no cell math/ru"),
    "--out is a file": (lambda s: (s / "out_file").write_text("x"), ["--out", "{suite}/out_file"], "exists and is not a folder"),
    "--set without a value": (lambda s: None, ["--set", "average.weights"], "expected METHOD.OPTION=VALUE"),
    "--set for a method not run": (lambda s: None, ["--set", "loraflow.epochs=1"], "is not in --methods"),
    "--set with a wrong type": (lambda s: None, ["--set", "average.weights=a:b"], "not a valid"),
    "wrong number of average weights": (lambda s: None, ["--set", "average.weights=1:0:0"], "got 3 weights for 2 adapters"),
    "LoraHub bounds out of order": (lambda s: None, ["--methods", "lorahub", "--set", "lorahub.lower_bound=2"], "lower_bound"),
    "NaN loss while training gates": (lambda s: None, ["--methods", "loraflow", "--set", "loraflow.learning_rate=1e30"], "best parameters restored"),
    "NaN average weights": (lambda s: None, ["--set", "average.weights=nan:nan"], "average.weights=nan:nan: not a finite number"),
    "infinite average weight": (lambda s: None, ["--set", "average.weights=inf:1"], "average.weights=inf:1: not a finite number"),
    "NaN peft merge weight": (lambda s: None, ["--methods", "ties", "--set", "ties.weights=1:nan"], "ties.weights=1:nan: not a finite"),
    "NaN learning rate": (lambda s: None, ["--methods", "loraflow", "--set", "loraflow.learning_rate=nan"], "learning_rate=nan: not a finite"),
    "negative seed": (lambda s: None, ["--seeds", "-1"], "--seeds -1: seed -1 is outside 0 to 4294967295"),
    "seed beyond numpy's range": (lambda s: None, ["--seeds", "0,4294967296"], "seed 4294967296 is outside"),
    "a present cell, then one the suite lacks": (lambda s: None, ["--langs", "zh,ru"], "has no cell math/ru"),
    "wrong number of merge weights beside another method": (lambda s: None, ["--methods", "base,cat", "--set", "cat.weights=1:0:0"], "got 3 weights for 2 adapters"),
    # Code and math items that could only score 0 (or fail after generation) are refused when the suite loads.
    "MBPP asserts without an entry_point": (code_cell_with(test="assert add(1, 2) == 3", entry_point=""), [], "code_zh_test.jsonl:2: field 'entry_point' is missing"),
    "check() test without an entry_point": (code_cell_with(entry_point=""), [], "code_zh_test.jsonl:2: field 'entry_point' is missing"),
    "entry_point the prompt does not define": (code_cell_with(entry_point="plus"), [], "code_zh_test.jsonl:2: field 'entry_point' is 'plus', but"),
    "MBPP asserts that never call the entry_point": (code_cell_with(test="assert plus(1, 2) == 3"), [], "code_zh_test.jsonl:2: field 'test' never calls"),
    "test with a syntax error": (code_cell_with(test="def check(candidate):\n    assert candidate(1, 2) == = 3\n"), [], "code_zh_test.jsonl:2: field 'test' is not valid Python"),
    "code test item without a test": (code_cell_with(test=""), [], "code_zh_test.jsonl:2: field 'test' is missing or empty"),
    "entry_point that is not a name": (code_cell_with(entry_point="add(1)"), [], "code_zh_test.jsonl:2: field 'entry_point' is 'add(1)', not a Python name"),
    "math test answer without a number": (lambda s: first_line_of(s / DATA, '{"id": "a", "prompt": "Q?", "target": "x", "answer": "many"}'), [], "math_zh_test.jsonl:1: field 'answer' is 'many', which holds no number"),
    "answer that is not a string": (lambda s: first_line_of(s / DATA, '{"id": "a", "prompt": "Q?", "target": "x", "answer": 7}'), [], "math_zh_test.jsonl:1: field 'answer' must be a string, not 7"),
    # Nonsense settings.
    "max_new_tokens beyond the model's context": (lambda s: edit_json(s / "suite.json", lambda j: j["max_new_tokens"].update(math=10**9)), [], "max_new_tokens.math is 1000000000, but the model's context holds 256 tokens"),
    "code task's default answer length beyond the model's context": (code_cell_with(), [], "tasks.code: the task's default answer length is 384 tokens (set max_new_tokens.code), but the model's context holds 256"),
    "empty list for average weights": (lambda s: None, ["--set", "average.weights="], "--set average.weights=: an empty list"),
    "absurd lora_alpha": (lambda s: edit_json(s / "zoo/language_zh/adapter_config.json", lambda c: c.update(lora_alpha=1e30)), [], "adapter_config.json field 'lora_alpha' 1e+30 gives module"),
    "NaN lora_alpha": (lambda s: edit_json(s / "zoo/language_zh/adapter_config.json", lambda c: c.update(lora_alpha=float("nan"))), [], "adapter_config.json field 'lora_alpha' nan gives module"),
    "absurd alpha_pattern": (lambda s: edit_json(s / "zoo/language_zh/adapter_config.json", lambda c: c.update(alpha_pattern={"q_proj": 1e9})), [], "adapter_config.json field 'alpha_pattern' 1000000000.0 gives module"),
    "config rank that disagrees with the tensors": (lambda s: edit_json(s / "zoo/language_zh/adapter_config.json", lambda c: c.update(r=2)), [], "adapter_config.json field 'r' is 2, but module 'model.layers.0.mlp.down_proj' has rank 4"),
    "rank_pattern that disagrees with the tensors": (lambda s: edit_json(s / "zoo/language_zh/adapter_config.json", lambda c: c.update(rank_pattern={"v_proj": 8})), [], "field 'rank_pattern' is 8, but module 'model.layers.0.self_attn.v_proj' has rank 4"),
    # Messages that name the file or option.
    "non-UTF-8 data file": (lambda s: (s / DATA).write_bytes(b'{"id": "a"}\n{"id": "\xff"}\n'), [], "math_zh_test.jsonl:2: not UTF-8 (byte 0xff at column 9)"),
    "non-UTF-8 suite.json": (lambda s: (s / "suite.json").write_bytes(b'{"zoo": "\xfe"}'), [], "suite.json:1: not UTF-8"),
    "non-UTF-8 zoo.json": (lambda s: (s / "zoo/zoo.json").write_bytes(b'\x80'), [], "zoo.json:1: not UTF-8"),
    "non-UTF-8 adapter_config.json": (lambda s: (s / "zoo/language_zh/adapter_config.json").write_bytes(b'\xc3('), [], "adapter_config.json:1: not UTF-8"),
    "suite.json nested 100000 deep": (lambda s: (s / "suite.json").write_text(nested(100000)), [], "suite.json: nested too deeply"),
    "data line nested 100000 deep": (lambda s: first_line_of(s / DATA, nested(100000)), [], "math_zh_test.jsonl:1: nested too deeply"),
    "zoo.json nested 100000 deep": (lambda s: (s / "zoo/zoo.json").write_text(nested(100000)), [], "zoo.json: nested too deeply"),
    "suite.json symlink loop": (lambda s: symlink_loop(s / "suite.json"), [], "suite.json: cannot be read (Too many levels of symbolic links)"),
    "--limit that is not a number": (lambda s: None, ["--limit", "abc"], "argument --limit: invalid int value: 'abc'"),
    "unknown option": (lambda s: None, ["--limt", "3"], "unrecognized arguments: --limt 3"),
}


@pytest.fixture()
def suite_copy(tiny_suite, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_suite, tmp_path / "suite"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_naming_what_is_wrong(case, suite_copy, tmp_path, capsys):
    out = tmp_path / "results"
    arguments = ["--suite", str(suite_copy), "--methods", "average,base", "--tasks", "math", "--langs", "zh",
                 "--out", str(out), "--device", "cpu"]  # fmt: skip
    assert main(arguments) == 0
    finished = {path: path.read_bytes() for path in (out / "cells").rglob("*.json")}
    capsys.readouterr()
    corrupt, extra, message = CASES[case]
    corrupt(suite_copy)
    extra = [argument.replace("{suite}", str(suite_copy)) for argument in extra]
    assert main(arguments + ["--force"] + extra) == 2  # a later --methods replaces the first
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], errors
    assert {path: path.read_bytes() for path in (out / "cells").rglob("*.json")} == finished  # earlier results kept
    record_figure("bad inputs", f"bad inputs: {len(CASES) + 3} file/option cases here (+ the option cases in test_grid.py) "
                  "each gave one error line, exit 2, finished cells untouched")


def test_disk_full_while_writing_a_cell_keeps_earlier_results(suite_copy, tmp_path, capsys, monkeypatch):
    out = tmp_path / "results"
    arguments = ["--suite", str(suite_copy), "--methods", "base", "--tasks", "math", "--langs", "zh,es", "--out", str(out)]
    assert main(arguments[:-4] + ["--langs", "zh", "--out", str(out)]) == 0
    finished = {path: path.read_bytes() for path in (out / "cells").rglob("*.json")}
    import json as json_module

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json_module, "dump", full_disk)
    capsys.readouterr()
    assert main(arguments) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert {path: path.read_bytes() for path in (out / "cells").rglob("*.json")} == finished
    assert not list(out.rglob("*.tmp"))  # the half-written temporary file was removed


def test_pickle_adapter_loads_only_with_the_flag_and_only_tensors(suite_copy, tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    weights = suite_copy / "zoo/language_zh/adapter_model.safetensors"
    reference_out, pickle_out = tmp_path / "reference", tmp_path / "pickle"
    arguments = ["--suite", str(suite_copy), "--methods", "language_lora", "--tasks", "math", "--langs", "zh"]
    assert main(arguments + ["--out", str(reference_out)]) == 0
    torch.save(load_file(str(weights)), weights.with_name("adapter_model.bin"))
    weights.unlink()
    assert main(arguments + ["--out", str(pickle_out)]) == 2
    assert main(arguments + ["--out", str(pickle_out), "--allow-pickle"]) == 0
    read = lambda out: json.loads(next((out / "cells").rglob("*.json")).read_text())["generations"]  # noqa: E731
    assert read(pickle_out) == read(reference_out)
    torch.save({"not a tensor": print}, weights.with_name("adapter_model.bin"))  # an object that needs unpickling code
    capsys.readouterr()
    assert main(arguments + ["--out", str(tmp_path / "evil"), "--allow-pickle"]) == 2
    assert "is not a plain tensor file" in capsys.readouterr().err


def test_read_only_output_folder_fails_clearly(suite_copy, tmp_path, capsys, monkeypatch):
    """CI runs as root, where permission bits do not stop writes, so the refusal is simulated at the rename."""
    import bench.storage

    def read_only(source, target):
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr(bench.storage.os, "replace", read_only)
    arguments = ["--suite", str(suite_copy), "--methods", "base", "--tasks", "math", "--langs", "zh", "--out", str(tmp_path / "r")]
    assert main(arguments) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(error) == 1 and "Permission denied" in error[0] and "seed0.json" in error[0]


def test_two_language_adapters_for_one_language_warn_naming_the_one_cells_use(suite_copy, caplog):
    from bench.zoo import read_zoo

    extra = {"name": "zh_other", "path": "language_es", "role": "language", "language": "zh"}
    edit_json(suite_copy / "zoo/zoo.json", lambda zoo: zoo["adapters"].append(extra))
    with caplog.at_level("WARNING", logger="bench.zoo"):
        zoo = read_zoo(suite_copy / "zoo")
    assert zoo.find("language", "zh").name == "zh"
    warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "adapters 'zh' and 'zh_other' are both language adapters for 'zh'" in warnings[0]
    assert "cells use 'zh' (the first listed)" in warnings[0]


def test_suite_json_tokenizer_field_names_a_tokenizer_outside_the_model_folder(suite_copy, tmp_path):
    tokenizer_folder = suite_copy / "tokenizer"
    tokenizer_folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (suite_copy / "model" / name).rename(tokenizer_folder / name)
    edit_json(suite_copy / "suite.json", lambda spec: spec.update(tokenizer="tokenizer"))
    arguments = ["--suite", str(suite_copy), "--methods", "base", "--tasks", "math", "--langs", "zh", "--out",
                 str(tmp_path / "results"), "--device", "cpu"]  # fmt: skip
    assert main(arguments) == 0
