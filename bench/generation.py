"""Greedy batched generation with left padding and stop strings, as the papers evaluate."""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from methods.data_parallel import SINGLE_PROCESS, DataParallel
from tasks.scoring import truncate_at_stop


class StopOnStrings(StoppingCriteria):
    """Marks a row finished once its generated text contains one of the stop strings."""

    def __init__(self, tokenizer, stop: tuple[str, ...], prompt_length: int, window: int = 24):
        self.tokenizer, self.stop, self.prompt_length, self.window = tokenizer, stop, prompt_length, window

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length :][:, -self.window :]
        texts = self.tokenizer.batch_decode(generated, skip_special_tokens=True)
        return torch.tensor([any(s in text for s in self.stop) for text in texts], device=input_ids.device)


@torch.no_grad()
def generate_completions(
    model: torch.nn.Module,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int,
    stop: tuple[str, ...] = (),
    batch_size: int = 16,
    batch_context: Callable[[dict], contextlib.AbstractContextManager] | None = None,
    parallel: DataParallel = SINGLE_PROCESS,
) -> list[str]:
    """Greedy completions of `prompts`, cut at the first stop string, in the order given.

    Prompts are batched by length (less padding); `batch_context(inputs)`, when given, wraps each batch's
    `generate()` call (used to record per-token fusion weights). Under `parallel`, each process generates every
    `world`-th batch (the same batches as one process, so the same completions) and all processes get every result.
    """
    device = next(model.parameters()).device
    order = sorted(range(len(prompts)), key=lambda index: len(prompts[index]))
    all_batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    completions: dict[int, str] = {}
    model.eval()
    for indices in tqdm(parallel.shard(all_batches), desc="generate", leave=False):
        inputs = tokenizer([prompts[i] for i in indices], return_tensors="pt", padding=True).to(device)
        prompt_length = inputs["input_ids"].shape[1]
        criteria = StoppingCriteriaList([StopOnStrings(tokenizer, stop, prompt_length)]) if stop else None
        with batch_context(dict(inputs, indices=indices)) if batch_context else contextlib.nullcontext():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                stopping_criteria=criteria,
            )
        texts = tokenizer.batch_decode(output[:, prompt_length:], skip_special_tokens=True)
        for index, text in zip(indices, texts):
            completions[index] = truncate_at_stop(text, stop)
    for part in parallel.gather(completions):
        completions.update(part)
    return [completions[index] for index in range(len(prompts))]
