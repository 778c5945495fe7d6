"""Gradient training shared by every method that learns something (gates, routers, LoRAs, fusion weights).

Examples become `prompt + target + eos` token sequences whose loss counts only the target tokens (the answer), as in
LoRA-Flow's and HydraLoRA's supervised fine-tuning. The loop keeps the parameters with the lowest dev loss
(or the best dev accuracy, when given a dev scorer).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm.auto import tqdm

from methods.data_parallel import SINGLE_PROCESS, DataParallel
from tasks.examples import Example

log = logging.getLogger(__name__)
IGNORE_INDEX = -100
SCHEDULES = ("constant", "linear", "cosine")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the best parameters seen so far have been restored."""


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: list[int]


def encode_example(tokenizer, example: Example, max_length: int) -> EncodedExample:
    """Token ids of prompt + target + eos, with labels masked (-100) on the prompt."""
    prompt_ids = tokenizer(example.prompt, add_special_tokens=True)["input_ids"] if example.prompt else []
    if not prompt_ids and tokenizer.bos_token_id is not None:
        prompt_ids = [tokenizer.bos_token_id]
    target_ids = tokenizer(example.target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = (prompt_ids + target_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + target_ids)[:max_length]
    return EncodedExample(input_ids=input_ids, labels=labels)


def collate(encoded: list[EncodedExample], pad_token_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padding is masked out of attention and loss."""
    length = max(len(item.input_ids) for item in encoded)
    input_ids = torch.full((len(encoded), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(encoded), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
    for row, item in enumerate(encoded):
        input_ids[row, : len(item.input_ids)] = torch.tensor(item.input_ids)
        labels[row, : len(item.labels)] = torch.tensor(item.labels)
        attention_mask[row, : len(item.input_ids)] = 1
    return {"input_ids": input_ids.to(device), "labels": labels.to(device), "attention_mask": attention_mask.to(device)}


def batches(encoded: list[EncodedExample], batch_size: int, pad_token_id: int, device: torch.device):
    """Consecutive batches of already-ordered examples."""
    for start in range(0, len(encoded), batch_size):
        yield collate(encoded[start : start + batch_size], pad_token_id, device)


def summed_target_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], target_only: bool = True,
                       ) -> tuple[torch.Tensor, int]:  # fmt: skip
    """Sum of next-token cross-entropy over target tokens, and how many target tokens there were.

    With `target_only` the vocabulary projection runs only at the positions that predict a target token in some row
    of the batch (`logits_to_keep` as position indices): the same sum, without the prompt's logits (a 16 x 256 batch
    of SmolLM2's 49152-word logits is 0.8 GB); models whose forward lacks `logits_to_keep` get every position.
    """
    labels = batch["labels"][:, 1:]  # position p predicts token p + 1
    keep = None
    if target_only and accepts_logits_to_keep(model):
        keep = (labels != IGNORE_INDEX).any(dim=0).nonzero().flatten()
        labels = labels[:, keep]
    extra = {} if keep is None else {"logits_to_keep": keep}
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **extra).logits
    logits = (logits if keep is not None else logits[:, :-1]).float()
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")  # fmt: skip
    return loss, int((labels != IGNORE_INDEX).sum())


def accepts_logits_to_keep(model: torch.nn.Module) -> bool:
    """Whether the causal LM under `model` (a PEFT wrapper, or the model itself) takes `logits_to_keep` indices."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft's wrappers
    return _forward_takes_logits_to_keep(type(inner))


@functools.cache
def _forward_takes_logits_to_keep(model_class: type) -> bool:  # once per class: the loss asks at every step
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def target_token_count(encoded: list[EncodedExample]) -> int:
    """How many tokens of `encoded` carry a loss (what `summed_target_loss` divides by, over a whole batch)."""
    return sum(sum(1 for label in item.labels[1:] if label != IGNORE_INDEX) for item in encoded)


@torch.no_grad()
def mean_target_loss(model, tokenizer, examples: list[Example], batch_size: int = 16, max_length: int = 512,
                     parallel: DataParallel = SINGLE_PROCESS) -> float:  # fmt: skip
    """Per-token cross-entropy on the targets of `examples` (the dev-selection criterion), shared out over processes."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    encoded = parallel.shard([encode_example(tokenizer, example, max_length) for example in examples])
    total, count = 0.0, 0
    for batch in batches(encoded, batch_size, tokenizer.pad_token_id, device):
        loss, tokens = summed_target_loss(model, batch)
        total, count = total + float(loss), count + tokens
    model.train(was_training)
    total, count = parallel.sum(torch.tensor([total, count], dtype=torch.float64)).tolist()
    return total / max(count, 1)


@dataclass
class TrainingConfig:
    """Optimiser settings; each method fills in its paper's defaults."""

    learning_rate: float = 1e-3
    batch_size: int = 4
    epochs: float = 1.0
    warmup_ratio: float = 0.0
    schedule: str = "constant"  # "constant" | "linear" | "cosine"
    weight_decay: float = 0.0
    max_length: int = 512
    evaluations: int = 4  # dev-loss checks over the run; the best one is kept (0: keep the final parameters)
    adam_betas: tuple[float, float] = (0.9, 0.999)  # torch's AdamW defaults unless a method cites its own
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 0.0  # clip the gradients' global norm to this before each step (0: no clipping)

    def __post_init__(self):
        """Refuse settings that would train nothing or divide by zero, naming the field."""
        positive = {"learning_rate": self.learning_rate, "batch_size": self.batch_size, "epochs": self.epochs,
                    "max_length": self.max_length, "adam_epsilon": self.adam_epsilon}  # fmt: skip
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"{name}={value}: must be greater than 0")
        for name, value in {"evaluations": self.evaluations, "weight_decay": self.weight_decay,
                            "warmup_ratio": self.warmup_ratio, "max_grad_norm": self.max_grad_norm}.items():  # fmt: skip
            if value < 0:
                raise ValueError(f"{name}={value}: must not be negative")
        if len(self.adam_betas) != 2 or not all(0 <= beta < 1 for beta in self.adam_betas):
            raise ValueError(f"adam_betas={self.adam_betas}: must be two numbers in [0, 1)")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}: valid: {', '.join(SCHEDULES)}")


# Optimiser fields added after cache keys were first made (bench/builtin_suite.py, bench/real_suite.py): they enter a
# key only when set away from these values, so every zoo built before they existed keeps its key and its bytes.
KEY_NEUTRAL_DEFAULTS = {"adam_betas": [0.9, 0.999], "adam_epsilon": 1e-8, "max_grad_norm": 0.0}


def key_record(record, neutral: dict = KEY_NEUTRAL_DEFAULTS):
    """`record` (a dataclasses.asdict tree) without the fields that sit at their `neutral` defaults (by default the
    optimiser fields above; bench/cell_identity.py passes its own for method options)."""
    if isinstance(record, dict):
        return {name: key_record(value, neutral) for name, value in record.items()
                if not (name in neutral and _as_list(value) == _as_list(neutral[name]))}  # fmt: skip
    if isinstance(record, (list, tuple)):
        return [key_record(value, neutral) for value in record]
    return record


def _as_list(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def _learning_rate_factor(step: int, total: int, config: TrainingConfig) -> float:
    warmup = int(config.warmup_ratio * total)
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    if config.schedule == "linear":
        return 1.0 - progress
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def train_parameters(
    model: torch.nn.Module,
    tokenizer,
    parameters: list[torch.nn.Parameter],
    train: list[Example],
    dev: list[Example],
    config: TrainingConfig,
    seed: int,
    description: str = "training",
    parallel: DataParallel = SINGLE_PROCESS,
    dev_accuracy: Callable[[torch.nn.Module], float] | None = None,
) -> list[dict]:
    """Train only `parameters` on `train` with AdamW (clipped when `max_grad_norm` is set); restore the state of the
    best evaluation (the lowest dev loss; with `dev_accuracy`, the highest `dev_accuracy(model)`, ties broken by the
    lower dev loss); return the history.

    Under `parallel`, each process computes its slice of every batch and the gradients are summed, which is the
    single-process step on the whole batch. Raises TrainingDiverged (after restoring the best state) when the loss
    stops being finite.
    """
    if not train:
        raise ValueError(f"{description}: no training examples")
    by_accuracy = dev_accuracy is not None
    if by_accuracy and not dev:
        raise ValueError(f"{description}: choosing the checkpoint by dev accuracy needs dev examples")
    generator = torch.Generator().manual_seed(seed)
    device = parameters[0].device
    encoded = [encode_example(tokenizer, example, config.max_length) for example in train]
    steps_per_epoch = math.ceil(len(encoded) / config.batch_size)
    total_steps = max(1, round(config.epochs * steps_per_epoch))
    check_every = max(1, total_steps // config.evaluations) if config.evaluations else total_steps + 1
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=tuple(config.adam_betas), eps=config.adam_epsilon)  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: _learning_rate_factor(step, total_steps, config))
    best, best_state = (math.inf, math.inf), [p.detach().clone() for p in parameters]
    history: list[dict] = []
    order: list[int] = []
    model.train()
    for step in tqdm(range(total_steps), desc=description, leave=False):
        if not order:
            order = length_grouped_order(encoded, config.batch_size, generator)
        batch_items = [encoded[order.pop()] for _ in range(min(config.batch_size, len(order)))]
        loss = local_batch_loss(model, parallel.shard(batch_items), target_token_count(batch_items), tokenizer, device)
        batch_loss = parallel.sum(loss.detach().clone())  # the whole batch's loss, the same on every process
        if not torch.isfinite(batch_loss):
            _restore(parameters, best_state)
            raise TrainingDiverged(f"{description}: loss is {float(batch_loss)} at step {step}; best parameters restored")
        optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:
            loss.backward()
        parallel.sum_gradients(parameters)
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        if (step + 1) % check_every == 0 or step + 1 == total_steps:
            dev_loss = (mean_target_loss(model, tokenizer, dev, max_length=config.max_length, parallel=parallel)
                        if dev else batch_loss.item())  # fmt: skip
            record = {"step": step + 1, "train_loss": batch_loss.item(), "dev_loss": dev_loss}
            if by_accuracy:
                model.eval()  # no dropout while the dev prompts are generated
                record["dev_accuracy"] = dev_accuracy(model)
            model.train()
            history.append(record)
            log.info("%s step %d: %s", description, step + 1, record)
            criterion = (-record["dev_accuracy"], dev_loss) if by_accuracy else (dev_loss, 0.0)
            if criterion < best:
                best, best_state = criterion, [p.detach().clone() for p in parameters]
    if config.evaluations:
        _restore(parameters, best_state)
    model.eval()
    return history


def local_batch_loss(model, items: list[EncodedExample], batch_tokens: int, tokenizer, device) -> torch.Tensor:
    """This process's share of the batch's mean target loss: its summed loss over the whole batch's token count."""
    if not items:
        return torch.zeros((), device=device)
    loss_sum, _ = summed_target_loss(model, collate(items, tokenizer.pad_token_id, device))
    return loss_sum / max(batch_tokens, 1)


def length_grouped_order(encoded: list[EncodedExample], batch_size: int, generator: torch.Generator) -> list[int]:
    """A random order in which neighbouring examples have similar lengths (less padding per batch).

    Shuffle, sort within windows of 32 batches by length, then shuffle the batches: random, yet dense. The list is
    consumed from its end (`pop`).
    """
    shuffled = torch.randperm(len(encoded), generator=generator).tolist()
    window = 32 * batch_size
    grouped = []
    for start in range(0, len(shuffled), window):
        grouped += sorted(shuffled[start : start + window], key=lambda index: len(encoded[index].input_ids))
    chunks = [grouped[start : start + batch_size] for start in range(0, len(grouped), batch_size)]
    chunk_order = torch.randperm(len(chunks), generator=generator).tolist()
    flat = [index for chunk_index in chunk_order for index in chunks[chunk_index]]
    return flat[::-1]


def _restore(parameters: list[torch.nn.Parameter], state: list[torch.Tensor]) -> None:
    with torch.no_grad():
        for parameter, saved in zip(parameters, state):
            parameter.copy_(saved)
