"""`hydralora` and `hydralora_tuned`: HydraLoRA (arXiv 2404.19245, NeurIPS 2024) as rows of the composition table.

HydraLoRA is a fine-tuning architecture (one shared A, N B heads, a per-token router; see `methods.hydra_layer`),
not a way to merge existing adapters. To compare it on equal footing it is trained once per seed on the data the
zoo's adapters saw (`cell.zoo_training_data`: in the built-in suite every language's general text plus the English
math and code data; in a suite.json suite the files zoo.json's `data` fields name, else each cell's own train split),
with N chosen by clustering that data, and then evaluated on every composite cell (`hydralora`). `hydralora_tuned`
starts from the same trained model and tunes only its routers on the cell's ~200 training examples, as LoRA-Flow
tunes its gates. The trained model is kept in `cell.shared_directory`, keyed by a digest of what it depends on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from tqdm.auto import tqdm

from methods.hydra_layer import (
    PARTS,
    HydraLoraLinear,
    HydraShape,
    RouterLoadRecorder,
    attach_hydra_layers,
    hydra_tensors,
    load_hydra_tensors,
)
from methods.registry import Cell, register_method
from methods.training import TrainingConfig, batches, encode_example, train_parameters
from tasks.examples import Example

log = logging.getLogger(__name__)
CONFIG_FILE = "hydralora_config.json"
WEIGHTS_FILE = "hydralora_model.safetensors"
TRAIN_DATA_CHOICES = ("zoo", "cell")


@dataclass
class HydraLoraConfig:
    """Defaults from the reference `HydraLoRA/fine-tuning.sh` unless a comment says otherwise."""

    rank: int = 4  # lora_rank=4: the shared A is r x d_in
    alpha: float = 32.0  # lora_alpha=32; scaling alpha / r (HydraLoRA/peft/tuners/lora.py)
    dropout: float = 0.05  # lora_dropout=0.05, on A's input only; the router sees x itself
    # N, the number of B heads. None: chosen by clustering the training data (paper: k-means; the script hard-codes
    # lora_b_nums=4, "Developer-specific, k-means, or DBSCAN").
    heads: int | None = None
    target_modules: tuple[str, ...] = ("gate_proj", "up_proj", "down_proj")  # lora_trainable
    # Choosing N: k-means on mean-pooled base-model hidden states, the candidate with the best silhouette score.
    head_candidates: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    cluster_examples: int = 1000  # a seeded sample of the training data is embedded and clustered
    # "zoo": trained once on cell.zoo_training_data, or on each cell's train split (logged) when the suite supplies
    # none; "cell": always on each cell's own train split.
    train_data: str = "zoo"
    learning_rate: float = 2e-4  # lr=0.0002
    epochs: float = 1.0  # num_train_epochs 1
    warmup_ratio: float = 0.03  # warmup_ratio 0.03 with lr_scheduler_type cosine and weight_decay 0
    batch_size: int = 8  # per_device_train_batch_size is left blank in fine-tuning.sh
    max_length: int = 512  # max_seq_length is left blank there too
    max_train_examples: int = 0  # 0: all of them; a cap keeps a CPU run short
    dev_fraction: float = 0.05  # held out for dev selection (fine-tuning.py validation_split_percentage=0.05)
    max_dev_examples: int = 200
    # hydralora_tuned only: LoRA-Flow's gate recipe on ~200 examples (thunlp/LoRAFlow README and scripts/train.sh).
    router_learning_rate: float = 1e-3  # README: 1e-3 for four of the six cells
    router_batch_size: int = 4  # README: total batch size 4 for four of the six cells
    router_epochs: float = 5.0  # scripts/train.sh: epoch=5


@dataclass
class HydraFit:
    """A HydraLoRA model attached to a cell's model: its layers [decoder layer][projection] and how it was made."""

    shape: HydraShape
    layers: list[list[HydraLoraLinear]]
    head_scores: dict[int, float] = field(default_factory=dict)  # silhouette per candidate N; empty when N was given
    history: list[dict] = field(default_factory=list)


def check_config(config: HydraLoraConfig, cell: Cell, method_name: str) -> HydraLoraConfig:
    """Refuse options and suites that cannot work, naming the option to change."""
    if config.train_data not in TRAIN_DATA_CHOICES:
        raise ValueError(f"--set {method_name}.train_data={config.train_data}: valid: {', '.join(TRAIN_DATA_CHOICES)}")
    if config.heads is not None and config.heads < 1:
        raise ValueError(f"--set {method_name}.heads={config.heads}: need at least 1 head (or none to cluster)")
    if config.train_data == "zoo" and not cell.zoo_training_data:
        log.warning(
            "%s: the suite does not supply the data its zoo's adapters were trained on (no `data` field in zoo.json), "
            "so HydraLoRA is trained on the %s/%s cell's own train split (as with --set %s.train_data=cell)",
            method_name, cell.task, cell.language, method_name,
        )  # fmt: skip
        return dataclasses.replace(config, train_data="cell")
    return config


def shuffled(examples: list[Example], seed: int) -> list[Example]:
    """A seeded permutation of `examples` (the same for the same seed, whatever else used the global RNG)."""
    order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
    return [examples[index] for index in order]


def shared_training_data(cell: Cell, config: HydraLoraConfig) -> tuple[list[Example], list[Example]]:
    """(train, dev) for the shared model: the zoo's data less a held-out dev share, or the cell's own splits."""
    if config.train_data == "cell":
        return cell.train, cell.dev
    examples = shuffled(cell.zoo_training_data, cell.seed)
    dev_count = min(config.max_dev_examples, round(config.dev_fraction * len(examples)))
    dev, train = examples[:dev_count], examples[dev_count:]
    return (train[: config.max_train_examples] if config.max_train_examples else train), dev


@torch.no_grad()
def mean_pooled_hidden_states(model, tokenizer, examples: list[Example], max_length: int) -> np.ndarray:
    """One feature row per example: the base model's last hidden states averaged over the example's tokens."""
    device = next(model.parameters()).device
    encoded = [encode_example(tokenizer, example, max_length) for example in examples]
    rows = []
    for batch in tqdm(batches(encoded, 16, tokenizer.pad_token_id, device), desc="hydralora features", leave=False):
        output = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        hidden = output.last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        rows.append(((hidden * mask).sum(1) / mask.sum(1)).float().cpu())
    return torch.cat(rows).numpy()


def choose_head_count(features: np.ndarray, candidates: tuple[int, ...], seed: int) -> tuple[int, dict[int, float]]:
    """The N among `candidates` whose k-means clustering of `features` has the best silhouette score, and all scores."""
    scores = {}
    for count in sorted(set(candidates)):
        if not 2 <= count < len(features):
            continue
        labels = KMeans(n_clusters=count, n_init=10, random_state=seed).fit_predict(features)
        if len(set(labels.tolist())) > 1:
            scores[count] = float(silhouette_score(features, labels))
    if not scores:
        raise ValueError(
            f"hydralora: cannot choose N among head_candidates {tuple(candidates)} from {len(features)} examples; "
            "give N with the `heads` option instead"
        )
    return max(scores, key=scores.get), scores


def shared_model_key(cell: Cell, config: HydraLoraConfig, train: list[Example], dev: list[Example]) -> str:
    """A digest of what the shared model depends on: its options, seed, base model and training data."""
    options = {name: value for name, value in dataclasses.asdict(config).items() if not name.startswith("router_")}
    digest = hashlib.sha256(json.dumps([options, cell.base_model_id, cell.seed], sort_keys=True).encode())
    for name, tensor in cell.model.state_dict().items():
        digest.update(name.encode() + tensor.flatten()[:8].float().cpu().numpy().tobytes())
    for example in (*train, *dev):
        digest.update(json.dumps([example.id, example.prompt, example.target]).encode())
    return digest.hexdigest()[:16]


def train_shared_model(cell: Cell, config: HydraLoraConfig, train: list[Example], dev: list[Example]) -> HydraFit:
    """Choose N (unless given), attach HydraLoRA to `cell.model`, train all its tensors; the base stays frozen."""
    heads, scores = config.heads, {}
    if heads is None:
        sample = shuffled(train, cell.seed)[: config.cluster_examples]
        features = mean_pooled_hidden_states(cell.model, cell.tokenizer, sample, config.max_length)
        heads, scores = choose_head_count(features, config.head_candidates, cell.seed)
        log.info("hydralora: N = %d heads (silhouette by N: %s)", heads, scores)
    shape = HydraShape(config.rank, config.alpha, config.dropout, heads, tuple(config.target_modules))
    layers = attach_hydra_layers(cell.model, shape, cell.seed)
    parameters = [getattr(layer, part) for row in layers for layer in row for part in PARTS]
    training = TrainingConfig(
        learning_rate=config.learning_rate, batch_size=config.batch_size, epochs=config.epochs,
        warmup_ratio=config.warmup_ratio, schedule="cosine", max_length=config.max_length,
    )  # fmt: skip
    with torch.random.fork_rng():  # dropout draws from the seed alone: the same model whichever cell or row trains it
        torch.manual_seed(cell.seed)
        history = train_parameters(cell.model, cell.tokenizer, parameters, train, dev, training, cell.seed, "hydralora",
                                   cell.parallel)  # fmt: skip
    return HydraFit(shape, layers, scores, [{**entry, "stage": "shared"} for entry in history])


def save_fit(directory: Path, model: torch.nn.Module, fit: HydraFit) -> None:
    """`hydralora_config.json` (shape, N selection, history) and `hydralora_model.safetensors` (A, B heads, routers)."""
    directory.mkdir(parents=True, exist_ok=True)
    record = {"shape": dataclasses.asdict(fit.shape), "head_scores": fit.head_scores, "history": fit.history}
    (directory / CONFIG_FILE).write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    save_file(hydra_tensors(model), str(directory / WEIGHTS_FILE))


def load_fit(directory: Path, model: torch.nn.Module) -> HydraFit:
    """Attach a saved HydraLoRA model (see `save_fit`) to `model`."""
    config_path = directory / CONFIG_FILE
    try:
        record = json.loads(config_path.read_text(encoding="utf-8"))
        shape = HydraShape(**{**record["shape"], "target_modules": tuple(record["shape"]["target_modules"])})
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{config_path}: not a readable HydraLoRA config ({error})") from None
    layers = attach_hydra_layers(model, shape, seed=0)
    load_hydra_tensors(model, load_file(str(directory / WEIGHTS_FILE)), str(directory / WEIGHTS_FILE))
    scores = {int(count): score for count, score in record.get("head_scores", {}).items()}
    return HydraFit(shape, layers, scores, record.get("history", []))


def save_atomically(target: Path, model: torch.nn.Module, fit: HydraFit) -> None:
    """Save into a scratch folder beside `target`, then rename it into place: `target` is absent or complete."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        save_fit(scratch, model, fit)
        os.replace(scratch, target)
    except OSError:
        if not (target / CONFIG_FILE).is_file():  # another process may have finished the same model first
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_or_train_shared_model(cell: Cell, config: HydraLoraConfig) -> HydraFit:
    """The model trained once and reused by every cell and both rows: loaded when saved, else trained and saved."""
    train, dev = shared_training_data(cell, config)
    if cell.shared_directory is None:
        return train_shared_model(cell, config, train, dev)
    target = cell.shared_directory / f"model-{shared_model_key(cell, config, train, dev)}"
    if (target / CONFIG_FILE).is_file():
        log.info("hydralora: reusing the trained model in %s", target)
        return load_fit(target, cell.model)
    fit = train_shared_model(cell, config, train, dev)
    save_atomically(target, cell.model, fit)
    return fit


def tune_routers(cell: Cell, config: HydraLoraConfig, fit: HydraFit) -> list[dict]:
    """Train only the routers on the cell's train split, with dev selection; A and the B heads stay fixed."""
    routers = []
    for layer in (layer for row in fit.layers for layer in row):
        layer.lora_A.requires_grad_(False)
        layer.lora_B.requires_grad_(False)
        routers.append(layer.router.requires_grad_(True))
    training = TrainingConfig(
        learning_rate=config.router_learning_rate, batch_size=config.router_batch_size, epochs=config.router_epochs,
        warmup_ratio=config.warmup_ratio, schedule="cosine", max_length=config.max_length,
    )  # fmt: skip
    history = train_parameters(
        cell.model, cell.tokenizer, routers, cell.train, cell.dev, training, cell.seed, "hydralora routers", cell.parallel
    )
    return [{**entry, "stage": "routers"} for entry in history]


def parameter_count(fit: HydraFit, parts: tuple[str, ...] = PARTS) -> int:
    """How many numbers the named HydraLoRA tensors of every adapted projection hold."""
    return sum(getattr(layer, part).numel() for row in fit.layers for layer in row for part in parts)


@register_method("hydralora")
class HydraLora:
    """HydraLoRA trained once on the zoo's data (N chosen by clustering unless given), used as is in every cell."""

    learns = True
    Config = HydraLoraConfig
    tunes_routers = False  # True in `hydralora_tuned`: the routers (only) are then tuned on the cell

    def __init__(self, cell: Cell, config: HydraLoraConfig | None = None):
        self.cell, self.config = cell, check_config(config or HydraLoraConfig(), cell, self.name)
        self.model = cell.model
        self.fitted: HydraFit | None = None
        self.recorder = RouterLoadRecorder(cell.tokenizer.pad_token_id)

    def fit(self) -> None:
        self.fitted = load_or_train_shared_model(self.cell, self.config)
        if self.tunes_routers:
            self.fitted.history = self.fitted.history + tune_routers(self.cell, self.config, self.fitted)

    def save(self, directory: Path) -> None:
        save_fit(directory, self.model, self.fitted)

    def load(self, directory: Path) -> None:
        self.fitted = load_fit(directory, self.model)

    @property
    def history(self) -> list[dict]:
        return self.fitted.history if self.fitted else []

    @property
    def trainable_parameter_count(self) -> int:
        """The tensors trained for this row: all of them once on the zoo's data, or only the routers on the cell."""
        if self.fitted is None:
            return 0
        return parameter_count(self.fitted, ("router",)) if self.tunes_routers else parameter_count(self.fitted)

    def record_weights(self, inputs: dict):
        return self.recorder.recording(self.model, self.fitted.layers, inputs)

    def recorded_weights(self, example_ids: list[str]) -> dict[str, torch.Tensor]:
        return self.recorder.loads_by_id(example_ids)


@register_method("hydralora_tuned")
class HydraLoraTuned(HydraLora):
    """The `hydralora` model with its routers (only) tuned on the cell's training examples."""

    tunes_routers = True
    shares_state_with = "hydralora"  # the grid gives both rows one cell.shared_directory, so one trained model
