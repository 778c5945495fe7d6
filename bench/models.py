"""Load a base causal LM and its tokenizer from a local path, a hub id, or a GGUF file."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present; `cpu` and `cuda` are taken as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ValueError(f"--device: unknown device '{name}'; valid: auto, cpu, cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return torch.device(name)


def prepare_tokenizer(tokenizer):
    """Left padding for batched generation; a pad token where the model has none."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str | Path, gguf_file: str | None = None, device: str = "auto", dtype: str = "float32"
):
    """Return (model in eval mode with frozen weights, tokenizer ready for left-padded batches)."""
    if dtype not in DTYPES:
        raise ValueError(f"--dtype: unknown dtype '{dtype}'; valid: {', '.join(DTYPES)}")
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(str(name_or_path), **extra))
    model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=DTYPES[dtype], **extra)
    model.to(resolve_device(device)).eval().requires_grad_(False)
    return model, tokenizer


def chat_format(tokenizer, where: str):
    """(system, user) -> the prompt by the tokenizer's own chat template, ending where the assistant's reply starts."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"{where}: the tokenizer has no chat template (prompt_format='llama2' uses the authors' prompts)")

    def format_prompt(system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    return format_prompt
