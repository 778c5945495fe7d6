"""Fixtures: a tiny random Llama, random PEFT adapters, a zoo and a local suite, all built in seconds."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from bench.tokenizer_training import train_tokenizer
from bench.suites import SuiteOptions, load_suite
from bench.zoo import ZooEntry, write_zoo
from methods.registry import Cell
from tasks.examples import Example, write_examples

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything here is local; never wait on a hub
# Each test fits what it runs: a fit cached by another test (or by the developer's runs) would hide its fitting.
# tests/test_fit_cache.py turns it on where it is the subject.
os.environ["LORA_COMPOSE_BENCH_FIT_CACHE"] = "0"
TINY_BASE_ID = "tiny-random-llama"
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SAMPLE_TEXT = [
    "Question: Ana has 3 apples and buys 4 more. How many apples? Answer: 3 + 4 = 7. #### 7",
    "def add_one(xs):\n    return [x + 1 for x in xs]\n",
    "小明有5个苹果。Мария купила 6 яблок. María compró 7 manzanas.",
] * 4


def tiny_llama(vocab_size: int, seed: int = 0, hidden: int = 32, layers: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


def random_lora(model, directory: Path, seed: int, rank: int = 4, alpha: int = 8, targets=TARGET_MODULES) -> Path:
    """Save a PEFT LoRA adapter with random A and B (B non-zero, so it changes outputs)."""
    torch.manual_seed(seed)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    peft_model.peft_config["default"].base_model_name_or_path = TINY_BASE_ID
    peft_model.save_pretrained(str(directory), save_embedding_layers=False)
    peft_model.unload()
    return directory


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tokenizer(SAMPLE_TEXT, vocab_size=300)


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    return tiny_llama(len(tiny_tokenizer))


# Test questions differ from train and dev ones (a suite refuses test leakage); dev repeats train's first questions.
SPLIT_OFFSETS = {"test": 0, "train": 10, "dev": 10}


def _math_examples(language: str, split: str, count: int) -> list[Example]:
    return [
        Example(id=f"{language}-{split}-{i}", prompt=f"Question: {n} + 1 = ?\nAnswer:", target=f" {n + 1}", answer=str(n + 1))
        for i, n in enumerate(range(SPLIT_OFFSETS[split], SPLIT_OFFSETS[split] + count))
    ]


@pytest.fixture(scope="session")
def tiny_suite(tmp_path_factory, tiny_tokenizer) -> Path:
    """A suite.json folder: a tiny random base model, a zoo of 3 random adapters, a math cell in zh and es."""
    root = tmp_path_factory.mktemp("tiny_suite")
    model = tiny_llama(len(tiny_tokenizer))
    model.save_pretrained(root / "model")
    tiny_tokenizer.save_pretrained(root / "model")
    entries = [
        ZooEntry(name="zh", path="language_zh", role="language", language="zh"),
        ZooEntry(name="es", path="language_es", role="language", language="es"),
        ZooEntry(name="math", path="skill_math", role="skill", skill="math"),
    ]
    for seed, entry in enumerate(entries):
        random_lora(tiny_llama(len(tiny_tokenizer)), root / "zoo" / entry.path, seed=seed + 1)
    write_zoo(root / "zoo", TINY_BASE_ID, entries)
    tasks = {}
    for language in ("zh", "es"):
        files = {}
        for split, count in (("train", 8), ("dev", 4), ("test", 6)):
            files[split] = f"data/math_{language}_{split}.jsonl"
            write_examples(root / files[split], _math_examples(language, split, count))
        tasks[language] = files
    suite = {"base_model": "model", "base_model_id": TINY_BASE_ID, "zoo": "zoo", "tasks": {"math": tasks},
             "max_new_tokens": {"math": 6}}  # fmt: skip
    (root / "suite.json").write_text(json.dumps(suite, indent=1))
    return root


@pytest.fixture(scope="session")
def suite(tiny_suite):
    """The tiny suite, loaded once; methods get deep copies of its model (the contract test checks they do)."""
    return load_suite(str(tiny_suite), SuiteOptions(device="cpu"))


def tiny_cell(suite, **fields) -> Cell:
    """The tiny suite's math/zh cell with a private copy of the base model; `fields` replace any Cell field."""
    data = suite.cells[("math", "zh")]
    values = dict(
        model=copy.deepcopy(suite.model), tokenizer=suite.tokenizer, adapters=suite.cell_adapters("math", "zh"),
        train=data.train, dev=data.dev, seed=0, task="math", language="zh", zoo=list(suite.adapters.values()),
        base_model_id=suite.base_model_id,
    )  # fmt: skip
    return Cell(**(values | fields))


FIGURES: dict[str, str] = {}  # what the reliability tests measured, printed after the run


def record_figure(key: str, text: str) -> None:
    FIGURES[key] = text


def pytest_terminal_summary(terminalreporter):
    for text in FIGURES.values():
        terminalreporter.write_line(text)
