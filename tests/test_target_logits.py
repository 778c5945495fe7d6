"""The training loss projects onto the vocabulary only where a target token is predicted (methods/training.py): the
same loss and gradients as the full projection, on a plain model and through PEFT's wrapper."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from methods.training import accepts_logits_to_keep, collate, encode_example, summed_target_loss
from tasks.examples import Example
from tests.conftest import TARGET_MODULES, tiny_llama

EXAMPLES = [Example(id=f"e{i}", prompt=f"{i} plus {i} is" + " so" * (3 * i), target=f" {2 * i}" + " ok" * i)
            for i in range(5)]  # prompts and targets of different lengths: the kept positions differ per row


def with_lora(model):
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(TARGET_MODULES), init_lora_weights=False)
    return get_peft_model(model, config)


@pytest.mark.parametrize("wrap", [lambda model: model, with_lora], ids=["plain", "peft"])
def test_target_only_logits_give_the_full_projections_loss_and_gradients(wrap, tiny_tokenizer):
    model = wrap(tiny_llama(len(tiny_tokenizer)))
    assert accepts_logits_to_keep(model)
    batch = collate([encode_example(tiny_tokenizer, example, 64) for example in EXAMPLES], tiny_tokenizer.pad_token_id,
                    torch.device("cpu"))  # fmt: skip
    trained = [parameter for parameter in model.parameters() if parameter.requires_grad]
    results = []
    for target_only in (False, True):
        model.zero_grad(set_to_none=True)
        loss, tokens = summed_target_loss(model, batch, target_only=target_only)
        loss.backward()
        results.append((loss.detach(), tokens, [parameter.grad.clone() for parameter in trained]))
    (full, full_tokens, full_grads), (kept, kept_tokens, kept_grads) = results
    assert full_tokens == kept_tokens > 0
    torch.testing.assert_close(kept, full, rtol=1e-6, atol=1e-6)
    for ours, reference in zip(kept_grads, full_grads):
        torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-7)
