"""The real tier and the paper setting, on small files of the real formats: the paper's cells, a zoo built once by
the shared zoo builder from catalogs / GSM8K / library functions, the released adapters and gates."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.generation import generate_completions
from bench.grid import make_cell
from bench.real_suite import CATALOG_WHEELS, PaperSettings, RealSettings, load_paper_suite, load_real_suite
from bench.suites import SuiteOptions
from methods.lora_training import LoraSettings
from methods.loraflow import LoraFlow, LoraFlowConfig
from methods.registry import make_config
from methods.training import TrainingConfig
from tests.conftest import random_lora, tiny_llama
from tests.test_real_corpora import mo_bytes
from tests.test_real_data import shared_data

TEXTS = {"zh": ["打开这个文件夹里的所有文件", "保存对这个笔记本所做的更改"], "ru": ["Сохранить все изменения в файле", "Открыть новую вкладку браузера"],
         "es": ["Guardar todos los cambios del archivo", "Abrir una nueva pestaña del navegador"]}  # fmt: skip
CODES = {"zh": "zh_Hans", "ru": "ru", "es": "es"}


def small_data(tmp_path: Path, lines: int = 3) -> Path:
    """The first `lines` records of every LoRA-Flow split and of GSM8K: the real formats, small."""
    source, target = shared_data("loraflow"), tmp_path / "data"
    for path in (source / "loraflow").rglob("*.jsonl"):
        copy = target / path.relative_to(source)
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:lines]), encoding="utf-8")
    shutil.copy(source / "loraflow" / "system_prompts.json", target / "loraflow" / "system_prompts.json")
    (target / "gsm8k").mkdir()
    gsm8k = (shared_data("gsm8k") / "gsm8k" / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (target / "gsm8k" / "train.jsonl").write_text("".join(gsm8k[:12]), encoding="utf-8")
    return target


def write_catalog_wheels(folder: Path) -> None:
    """Wheels named as pinned, holding tiny catalogs, so no download happens."""
    folder.mkdir(parents=True)
    for requirement in CATALOG_WHEELS:
        name, version = requirement.split("==")
        with zipfile.ZipFile(folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl", "w") as wheel:
            for language, texts in TEXTS.items():
                entries = {f"{name} {index}": text for index, text in enumerate(texts)}
                wheel.writestr(f"{name}/locale/{CODES[language]}/LC_MESSAGES/messages.mo", mo_bytes(entries))


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")  # fmt: skip


def chat_model(tiny_suite: Path, folder: Path) -> Path:
    """The tiny suite's model with a ChatML chat template, as SmolLM2-Instruct has."""
    shutil.copytree(tiny_suite / "model", folder)
    (folder / "chat_template.jinja").write_text(CHATML, encoding="utf-8")
    return folder


def tiny_real_settings(base_model: Path, **fields) -> RealSettings:
    training = TrainingConfig(learning_rate=1e-3, batch_size=4, epochs=1, evaluations=0, max_length=64)
    return RealSettings(base_model=str(base_model), language_texts=4, math_examples=6, code_examples=6,
                        text_chunk_characters=30, adapter=LoraSettings(rank=2, alpha=4), adapter_training=training,
                        **fields)  # fmt: skip


def test_real_suite_builds_its_zoo_once_on_the_papers_cells(tiny_suite, tmp_path):
    options = SuiteOptions(cache_dir=tmp_path / "cache", device="cpu", data_dir=small_data(tmp_path))
    write_catalog_wheels(tmp_path / "cache" / "catalog-wheels")
    model = chat_model(tiny_suite, tmp_path / "chat-model")
    suite = load_real_suite(options, tiny_real_settings(model))
    assert sorted(suite.adapters) == ["language_es", "language_ru", "language_zh", "skill_code", "skill_math"]
    assert sorted(suite.cells) == sorted((s, l) for s in ("math", "code") for l in ("zh", "ru", "es"))
    assert suite.cells[("math", "zh")].test[0].id.startswith("loraflow-math-zh-test")
    # the model's own chat template; replies end at its end-of-turn token, and code is cut out of them
    code_test = suite.cells[("code", "ru")].test[0]
    assert code_test.prompt.startswith("<|im_start|>system\n") and code_test.prompt.endswith("<|im_start|>assistant\n")
    assert code_test.code_context in code_test.prompt and suite.stop == {"math": (), "code": ()}
    (build,) = (tmp_path / "cache").glob("real-*/build.json")
    record = json.loads(build.read_text())
    # zh's two short strings join into one 30-character passage; ru's and es's are long enough alone
    assert record["examples"] == {"language_zh": 1, "language_ru": 2, "language_es": 2, "skill_math": 6, "skill_code": 6}
    stamp = build.stat().st_mtime_ns
    llama2 = load_real_suite(options, tiny_real_settings(model, prompt_format="llama2"))
    assert build.stat().st_mtime_ns == stamp  # reused, not rebuilt: the prompt format is not a zoo setting
    assert llama2.cells[("math", "zh")].test[0].prompt.startswith("[INST] <<SYS>>")
    assert llama2.stop["math"][0] == "Question:" and llama2.stop["code"] == ()  # the authors' stop strings
    with pytest.raises(ValueError, match="RealSettings.prompt_format: unknown value 'alpaca'"):
        load_real_suite(options, tiny_real_settings(model, prompt_format="alpaca"))
    # the first three ru/es HumanEval items: ru HumanEval/5 and es HumanEval/2 had their code translated
    released = {language: [e.id for e in suite.cells[("code", language)].test] for language in ("zh", "ru", "es")}
    sound = load_real_suite(options, tiny_real_settings(model, humaneval_prompts="sound"))
    assert build.stat().st_mtime_ns == stamp  # not a zoo setting either
    assert (suite.name, sound.name) == ("real", "real-sound")  # another test set: its cells are filed apart
    assert {language: [e.id for e in sound.cells[("code", language)].test] for language in released} == {
        "zh": released["zh"], "ru": ["loraflow-code-ru-test-2", "loraflow-code-ru-test-53"],
        "es": ["loraflow-code-es-test-0", "loraflow-code-es-test-1"],
    }  # fmt: skip
    assert len(released["ru"]) == len(released["es"]) == 3 and list(tmp_path.glob("cache/humaneval-canonical/*.json"))
    with pytest.raises(ValueError, match="RealSettings.humaneval_prompts: unknown value 'all'; valid: released, sound"):
        load_real_suite(options, tiny_real_settings(model, humaneval_prompts="all"))
    with pytest.raises(ValueError, match="has no chat template"):
        load_real_suite(options, tiny_real_settings(tiny_suite / "model"))


def test_real_suite_without_data_names_the_option(capsys):
    assert main(["--suite", "real", "--methods", "base", "--out", "/tmp/unused-real"]) == 2
    assert "--data-dir: the real and paper suites read the public data sets" in capsys.readouterr().err


def write_released_checkpoints(folder: Path, tiny_suite: Path) -> None:
    vocab = json.loads((tiny_suite / "model" / "config.json").read_text())["vocab_size"]
    for seed, name in enumerate(("zh", "ru", "es", "math", "code")):
        random_lora(tiny_llama(vocab), folder / "LoRAs" / f"{name}_lora", seed=seed + 10)
    gates = {}
    for layer in range(2):
        gates[f"encoder.layers.{layer}.lora_fusion_gate.weight"] = torch.ones(2, 32)
        gates[f"encoder.layers.{layer}.weight_bias"] = torch.tensor([0.25, -0.25])
    (folder / "Gates").mkdir()
    torch.save(gates, folder / "Gates" / "es_math.pt")


def test_paper_suite_loads_released_adapters_and_evaluates_released_gates(tiny_suite, tmp_path):
    data = small_data(tmp_path)
    write_released_checkpoints(tmp_path / "checkpoints", tiny_suite)
    options = SuiteOptions(cache_dir=tmp_path / "cache", device="cpu", data_dir=data,
                           checkpoints_dir=tmp_path / "checkpoints")  # fmt: skip
    suite = load_paper_suite(options, PaperSettings(base_model=str(tiny_suite / "model"), max_new_tokens={"math": 4, "code": 4}))
    assert [adapter.name for adapter in suite.cell_adapters("code", "ru")] == ["ru", "code"]
    cell = make_cell(suite, "math", "es", 0, tmp_path / "shared")
    method = LoraFlow(cell, LoraFlowConfig(gates_from=str(tmp_path / "checkpoints" / "Gates")))
    method.fit()
    assert all(torch.equal(gate.bias, torch.tensor([0.25, -0.25])) for gate in method.gates)
    prompts = [example.prompt for example in suite.cells[("math", "es")].test[:2]]
    assert len(generate_completions(method.model, suite.tokenizer, prompts, max_new_tokens=4)) == 2


def test_paper_suite_evaluates_zh_and_ru_math_gates_at_the_authors_temperature(tiny_suite, tmp_path):
    write_released_checkpoints(tmp_path / "checkpoints", tiny_suite)
    options = SuiteOptions(device="cpu", data_dir=small_data(tmp_path), checkpoints_dir=tmp_path / "checkpoints")
    suite = load_paper_suite(options, PaperSettings(base_model=str(tiny_suite / "model")))
    # UltraEval URLs/url.py: 1.1 for the zh_math and ru_math gates, 1.0 for the others
    assert {cell: data.gate_temperature for cell, data in suite.cells.items()} == {
        ("math", "zh"): 1.1, ("math", "ru"): 1.1, ("math", "es"): 1.0,
        ("code", "zh"): 1.0, ("code", "ru"): 1.0, ("code", "es"): 1.0,
    }  # fmt: skip
    # The authors kept the checkpoint best on dev (thunlp/LoRAFlow README): every paper cell chooses by dev accuracy
    assert {data.checkpoint_choice for data in suite.cells.values()} == {"dev_accuracy"}
    zh_math = make_cell(suite, "math", "zh", 0, tmp_path / "shared")
    method = LoraFlow(zh_math, LoraFlowConfig(gates_from=str(tmp_path / "checkpoints" / "Gates")))
    assert [gate.temperature for gate in method.gates] == [1.1, 1.1]
    assert method.training_temperature == 1.0  # the authors trained at T = 1 and evaluated at 1.1
    explicit = make_config(LoraFlow, {"temperature": "1.0"})  # an explicit --set wins over the suite's value
    overridden = LoraFlow(make_cell(suite, "math", "zh", 0, tmp_path / "shared"), explicit)
    assert [gate.temperature for gate in overridden.gates] == [1.0, 1.0] and overridden.training_temperature == 1.0


def test_paper_suite_without_checkpoints_says_how_to_get_them(tmp_path, capsys):
    assert main(["--suite", "paper", "--methods", "base", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "huggingface-cli download Bowen232/LoRA-Flow" in capsys.readouterr().err


def test_sound_prompt_suites_are_command_line_names(monkeypatch):
    import bench.real_suite as real_suite
    from bench.suites import SUITES

    seen = []
    monkeypatch.setattr(real_suite, "load_real_suite", lambda options, settings: seen.append(settings.humaneval_prompts))
    monkeypatch.setattr(real_suite, "load_paper_suite", lambda options, settings: seen.append(settings.humaneval_prompts))
    SUITES["real-sound"](None)
    SUITES["paper-sound"](None)
    assert seen == ["sound", "sound"]
