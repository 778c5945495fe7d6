"""`lorahub`: one weight per candidate adapter, searched without gradients (LoraHub, arXiv 2307.13269, seed 002).

Compose: every LoRA tensor is weighted and summed, `A = sum_i w_i A_i` and `B = sum_i w_i B_i`
(`methods.lora_composition`); this is not a weighted sum of the adapters' outputs, which `average` computes.
Adapt: minimise `loss(composed model, few examples) + 0.05 * mean_i |w_i|` over `w in [-1.5, 1.5]^k` with nevergrad,
as the reference `lorahub_learning` does (package `lorahub` 0.1.0, `lorahub/algorithm.py`).
Result: the composed LoRA, attached as one fused adapter (generation as fast as a single LoRA) and exported as a
standard PEFT directory `adapter/` beside `weights.json`.

The loss is the reference's value (`reference_loss`: per-batch mean target-token cross-entropy, summed over batches,
divided by the number of examples), on `prompt + target + eos` sequences with the loss on the target, the causal-LM
form of the reference's seq2seq labels.

Same objective, less work per candidate than the reference, which rebuilds a full state dict and reloads it into the
model for every candidate and scores candidates one at a time: here the candidates' tensors sit flattened beside the
model and one matmul composes every module's A and B (`CandidateLoraBank`); logits are computed only from the first
target position on; and the candidates the optimizer hands out before it needs results (a CMA-ES generation) are
scored together in one candidate-batched forward. The tensors are copies, so no step can overwrite a cached adapter
(the `lorahub` 0.1.0 wheel, lacking a later `copy.deepcopy`, could).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import logging
import math
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nevergrad as ng
import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from methods.lora_adapter import LoraAdapter, export_peft_adapter, load_lora_adapter
from methods.lora_composition import (
    CandidateLoraBank,
    StackedLora,
    attach_candidate_layers,
    composed_adapter,
    detach_candidate_layers,
    stack_candidate_tensors,
)
from methods.multi_lora import attach_adapters, set_static_weights
from methods.registry import Cell, register_method
from methods.training import IGNORE_INDEX, EncodedExample, batches, encode_example
from tasks.examples import Example

log = logging.getLogger(__name__)
RESULT_FILE = "weights.json"  # what `bench.plots.lorahub_weights` reads
ADAPTER_DIRECTORY = "adapter"
CANDIDATE_SETS = ("cell", "zoo")
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Regularizer = Callable[[np.ndarray], float]
# nevergrad 1.0.12 hands scipy's COBYLA a final trust radius scipy rejects and replaces by its own default, with a
# warning on every search (it runs in nevergrad's worker thread, so only a process-wide filter silences it).
warnings.filterwarnings("ignore", message="COBYLA: Invalid RHOEND", category=UserWarning)


@dataclass
class LoraHubConfig:
    """LoraHub's settings; defaults are the reference `lorahub_learning`'s (lorahub/algorithm.py) unless noted."""

    max_inference_step: int = 40  # search budget, in candidates scored (lorahub_learning's max_inference_step)
    # NGOpt (reference) resolves to COBYLA for this parametrisation in nevergrad 0.11-1.0.12, one candidate at a time;
    # "CMA" is the CMA-ES the paper describes (Sec. 3), whose generations are scored in one batched forward each.
    optimizer: str = "NGOpt"
    lower_bound: float = -1.5  # ng.p.Array(lower=-1.5, upper=1.5)
    upper_bound: float = 1.5
    initial_weight: float = 0.0  # ng.p.Array(init=[0] * k): the search starts from the base model
    l1_strength: float = 0.05  # default_l1_regularization: 0.05 * mean_i |w_i|
    example_count: int = 5  # few-shot examples, drawn (seeded) from the cell's train split; paper Sec. 4: 5 per task
    batch_size: int | None = None  # None: all examples in one batch (reference); it also changes the loss value,
    # since the reference averages per batch (see reference_loss)
    candidates: str = "cell"  # "cell": the cell's language and skill adapters; "zoo": every adapter of the zoo
    # nevergrad's num_workers (reference: 1). Above 1, NGOpt would pick MetaModel (not the reference's COBYLA, and it
    # fails under numpy 2.x in nevergrad 1.0.12), so it is refused; CMA batches its generations anyway.
    num_workers: int = 1
    max_candidates_per_forward: int = 0  # 0: all the optimizer allows without changing its search (a CMA generation)
    max_length: int = 2048  # the reference tokenizes with max_length=2048, truncation=True

    def __post_init__(self):
        bounds = (self.lower_bound, self.upper_bound)
        if not all(math.isfinite(bound) for bound in bounds) or self.lower_bound >= self.upper_bound:
            self._fail("lower_bound", f"must be finite and below upper_bound={self.upper_bound}")
        if not self.lower_bound <= self.initial_weight <= self.upper_bound:
            self._fail("initial_weight", f"must lie within [lower_bound, upper_bound] = [{bounds[0]}, {bounds[1]}]")
        for name in ("max_inference_step", "example_count", "num_workers"):
            if getattr(self, name) < 1:
                self._fail(name, "must be at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            self._fail("batch_size", "must be at least 1 (or None: all examples in one batch)")
        for name in ("max_candidates_per_forward", "l1_strength"):
            if getattr(self, name) < 0:
                self._fail(name, "must not be negative")
        if self.candidates not in CANDIDATE_SETS:
            self._fail("candidates", f"valid: {', '.join(CANDIDATE_SETS)}")
        if self.optimizer not in ng.optimizers.registry:
            self._fail("optimizer", "not a nevergrad optimizer name (e.g. NGOpt, CMA)")
        if self.optimizer == "NGOpt" and self.num_workers > 1:
            self._fail("num_workers", "NGOpt then selects MetaModel, not the reference's COBYLA (and it fails under "
                       "numpy 2.x in nevergrad 1.0.12); to score candidates in batches use optimizer=CMA")  # fmt: skip

    def _fail(self, field: str, reason: str):
        raise ValueError(f"lorahub.{field}={getattr(self, field)!r}: {reason}")


def reference_loss(example_losses: torch.Tensor, token_counts: torch.Tensor, batch_size: int | None = None):
    """The reference `default_get_loss` for c candidates: (c, n) summed target losses per example -> (c,).

    Each batch's mean token cross-entropy, summed over batches and divided by the number of *examples* (not of
    batches): with all examples in one batch the loss term is the mean token loss / n, which weights the L1 term more.
    """
    count = example_losses.shape[1]
    size = batch_size or count
    total = example_losses.new_zeros(example_losses.shape[0])
    for start in range(0, count, size):
        batch_tokens = token_counts[start : start + size].sum().clamp(min=1)
        total = total + example_losses[:, start : start + size].sum(dim=1) / batch_tokens
    return total / count


def l1_regularization(weights: np.ndarray, strength: float = 0.05) -> float:
    """The reference `default_l1_regularization`: `strength * mean_i |w_i|`."""
    return strength * float(np.abs(weights).mean())


def candidate_example_losses(model: torch.nn.Module, batch: dict, candidates: int, keep_logits: bool) -> torch.Tensor:
    """Summed target cross-entropy per (candidate, example): one forward of the batch repeated once per candidate."""
    labels = batch["labels"]
    length = labels.shape[1]
    target_positions = (labels != IGNORE_INDEX).nonzero()[:, 1]
    first_target = max(int(target_positions.min()), 1) if len(target_positions) else 1  # label 0 is never predicted
    keep = length - first_target + 1 if keep_logits else length  # logits from the position predicting the 1st target
    extra = {"logits_to_keep": keep} if keep_logits else {}
    logits = model(
        input_ids=batch["input_ids"].repeat(candidates, 1),
        attention_mask=batch["attention_mask"].repeat(candidates, 1),
        **extra,
    ).logits
    targets = labels[:, length - keep + 1 :].repeat(candidates, 1)
    token_losses = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX,
        reduction="none",
    )  # fmt: skip
    return token_losses.view(targets.shape).sum(dim=1).view(candidates, -1)


class CandidateScorer:
    """The LoraHub objective of several weight vectors at once: `loss + regularizer`, one forward per batch."""

    def __init__(self, model, bank: CandidateLoraBank, batch_list: list[dict], loss_function, regularizer):
        self.model, self.bank, self.batches = model, bank, batch_list
        self.loss_function, self.regularizer = loss_function, regularizer
        self.token_counts = torch.cat([(batch["labels"][:, 1:] != IGNORE_INDEX).sum(dim=1) for batch in batch_list])
        self.keep_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    @torch.no_grad()
    def example_losses(self, candidates: int) -> torch.Tensor:
        """(c, n) summed target losses per candidate and example, with the composed LoRAs in place."""
        self.model.eval()
        parts = [candidate_example_losses(self.model, batch, candidates, self.keep_logits) for batch in self.batches]
        return torch.cat(parts, dim=1)

    def __call__(self, weights: np.ndarray) -> np.ndarray:
        self.bank.compose(torch.as_tensor(weights, dtype=torch.float32))
        example_losses = self.example_losses(len(weights))
        losses = self.loss_function(example_losses, self.token_counts.to(example_losses.device))
        return losses.double().cpu().numpy() + np.array([self.regularizer(row) for row in weights])


@dataclass
class SearchResult:
    weights: np.ndarray  # the optimizer's recommendation, one weight per candidate adapter
    objective: float  # of `weights`, scored once more after the search
    history: list[dict]  # per step: the candidate's objective and weights
    optimizer: str  # what the nevergrad optimizer resolved to (NGOpt -> Cobyla, CMA -> CMAbounded, ...)


def make_optimizer(config: LoraHubConfig, count: int, seed: int):
    """The reference's search space and optimizer, seeded through the parametrisation (no global random state)."""
    parametrization = ng.p.Array(
        init=np.full(count, config.initial_weight), lower=config.lower_bound, upper=config.upper_bound
    )
    parametrization.random_state = np.random.RandomState(seed)
    optimizer_class = ng.optimizers.registry[config.optimizer]
    return optimizer_class(
        parametrization=parametrization, budget=config.max_inference_step, num_workers=config.num_workers
    )


def generation_size(optimizer) -> int:
    """How many candidates the optimizer hands out before it needs results, with the same search as one at a time."""
    chosen = getattr(optimizer, "optim", optimizer)  # NGOpt / CMA delegate to the optimizer they select
    evolution_strategy = getattr(chosen, "es", None)  # nevergrad's CMA draws a whole generation of `popsize` at once
    return max(getattr(evolution_strategy, "popsize", 0), optimizer.num_workers)


def search_weights(score: Callable[[np.ndarray], np.ndarray], count: int, config: LoraHubConfig, seed: int):
    """Minimise `score` ((c, k) weights -> (c,) objectives) by ask/tell; return (recommendation, history, optimizer)."""
    optimizer = make_optimizer(config, count, seed)
    limit = generation_size(optimizer)
    block = min(limit, config.max_candidates_per_forward or limit)
    budget, history = config.max_inference_step, []
    with tqdm(total=budget, desc="lorahub search", leave=False) as progress:
        while len(history) < budget:
            candidates = [optimizer.ask() for _ in range(min(block, budget - len(history)))]
            objectives = score(np.stack([candidate.value for candidate in candidates]))
            for candidate, objective in zip(candidates, objectives):
                optimizer.tell(candidate, float(objective))
                step = {"step": len(history) + 1, "objective": float(objective), "weights": candidate.value.tolist()}
                history.append(step)
            progress.update(len(candidates))
    chosen = getattr(optimizer, "optim", optimizer)
    return np.asarray(optimizer.provide_recommendation().value, dtype=float), history, chosen.name


@contextlib.contextmanager
def candidate_scorer(
    model: torch.nn.Module,
    stacked: dict[str, StackedLora],
    encoded: list[EncodedExample],
    pad_token_id: int,
    config: LoraHubConfig,
    loss_function: LossFunction | None = None,
    regularizer: Regularizer | None = None,
):
    """Yield the LoraHub objective on `model`, whose adapted Linears are wrapped inside the block and put back after."""
    loss_function = loss_function or functools.partial(reference_loss, batch_size=config.batch_size)
    regularizer = regularizer or functools.partial(l1_regularization, strength=config.l1_strength)
    device = next(model.parameters()).device
    batch_list = list(batches(encoded, config.batch_size or len(encoded), pad_token_id, device))
    bank = attach_candidate_layers(model, stacked)
    try:
        yield CandidateScorer(model, bank, batch_list, loss_function, regularizer)
    finally:
        detach_candidate_layers(model)


def search_lorahub_weights(
    model: torch.nn.Module,
    stacked: dict[str, StackedLora],
    encoded: list[EncodedExample],
    pad_token_id: int,
    config: LoraHubConfig,
    seed: int,
    loss_function: LossFunction | None = None,
    regularizer: Regularizer | None = None,
) -> SearchResult:
    """Search LoraHub weights for the encoded few-shot examples; `model` is left as it was."""
    count = next(iter(stacked.values())).A.shape[0]
    with candidate_scorer(model, stacked, encoded, pad_token_id, config, loss_function, regularizer) as scorer:
        weights, history, optimizer_name = search_weights(scorer, count, config, seed)
        objective = float(scorer(weights[None])[0])
    return SearchResult(weights=weights, objective=objective, history=history, optimizer=optimizer_name)


def few_shot_examples(train: list[Example], count: int, seed: int) -> list[Example]:
    """`count` examples drawn without replacement (seeded) from `train`; all of them when there are no more."""
    if not train:
        raise ValueError("lorahub: the cell has no train examples to compose on")
    return list(train) if count >= len(train) else random.Random(seed).sample(list(train), count)


def search_cell_weights(
    cell: Cell,
    stacked: dict[str, StackedLora],
    config: LoraHubConfig,
    loss_function: LossFunction | None = None,
    regularizer: Regularizer | None = None,
) -> tuple[SearchResult, list[Example]]:
    """LoraHub's search on the cell's few-shot examples (seeded draw from its train split); the examples used too."""
    examples = few_shot_examples(cell.train, config.example_count, cell.seed)
    encoded = [encode_example(cell.tokenizer, example, config.max_length) for example in examples]
    result = search_lorahub_weights(cell.model, stacked, encoded, cell.tokenizer.pad_token_id, config, cell.seed,
                                    loss_function, regularizer)  # fmt: skip
    return result, examples


@register_method("lorahub")
class LoraHub:
    """LoraHub on one cell; `loss_function` and `regularizer` replace the reference's defaults, as `get_loss` and
    `get_regular` do there (signatures: `reference_loss`, `l1_regularization`)."""

    learns = True
    Config = LoraHubConfig

    def __init__(
        self,
        cell: Cell,
        config: LoraHubConfig | None = None,
        loss_function: LossFunction | None = None,
        regularizer: Regularizer | None = None,
    ):
        self.config = config or LoraHubConfig()
        self.cell = cell
        self.candidates = cell.zoo if self.config.candidates == "zoo" else cell.adapters
        if not self.candidates:
            raise ValueError(f"lorahub.candidates={self.config.candidates!r}: the cell has no such adapters")
        self.stacked = stack_candidate_tensors(self.candidates)
        self.loss_function, self.regularizer = loss_function, regularizer
        self.model = cell.model
        self.trainable_parameter_count = len(self.candidates)
        self.weights: list[float] = []
        self.history: list[dict] = []
        self.record: dict = {}

    def fit(self) -> None:
        result, examples = search_cell_weights(self.cell, self.stacked, self.config, self.loss_function, self.regularizer)
        self.weights, self.history = result.weights.tolist(), result.history
        self.record = {
            "method": "lorahub", "task": self.cell.task, "language": self.cell.language, "seed": self.cell.seed,
            "adapters": [adapter.name for adapter in self.candidates], "weights": self.weights,
            "objective": result.objective, "optimizer": result.optimizer, "examples": [e.id for e in examples],
            "bounds": [self.config.lower_bound, self.config.upper_bound], "history": self.history,
        }  # fmt: skip
        log.info("lorahub %s/%s: weights %s, objective %.4f (%s)", self.cell.task, self.cell.language,
                 self.weights, result.objective, result.optimizer)  # fmt: skip
        weights = torch.tensor(self.weights, dtype=torch.float32)
        self._attach(composed_adapter(self.stacked, weights, name="lorahub", base_model=self.cell.base_model_id))

    def save(self, directory: Path) -> None:
        export_peft_adapter(self.adapter, Path(directory) / ADAPTER_DIRECTORY)
        text = json.dumps(self.record, indent=1, sort_keys=True, ensure_ascii=False)
        (Path(directory) / RESULT_FILE).write_text(text + "\n", encoding="utf-8")

    def load(self, directory: Path) -> None:
        path = Path(directory) / RESULT_FILE
        record = json.loads(path.read_text(encoding="utf-8"))
        names = [adapter.name for adapter in self.candidates]
        if record.get("adapters") != names:
            raise ValueError(f"{path}: saved for adapters {record.get('adapters')}; this cell's candidates are {names}")
        self.record, self.weights, self.history = record, record["weights"], record["history"]
        self._attach(load_lora_adapter(Path(directory) / ADAPTER_DIRECTORY, name="lorahub"))

    def _attach(self, adapter: LoraAdapter) -> None:
        """Generation uses the composed LoRA alone, through the same fused layer as a single adapter."""
        self.adapter = adapter
        set_static_weights(attach_adapters(self.model, [adapter]), [1.0])
