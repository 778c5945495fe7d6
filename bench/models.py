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


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt", "merges.txt")


def check_tokenizer_folder(location: str | Path, hint: str = "") -> None:
    """Refuse a local folder without tokenizer files: transformers would blame sentencepiece or tiktoken instead."""
    folder = Path(location)
    if folder.is_dir() and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ValueError(
            f"{folder}: no tokenizer here (none of {', '.join(TOKENIZER_FILES)}); save the tokenizer into this folder"
            + (f" or {hint}" if hint else "")
        )


def check_tokenizer_fits(tokenizer, model, tokenizer_location: str, model_location: str) -> None:
    """Refuse a tokenizer that lacks an end-of-sequence token or has ids past the model's embedding rows."""
    if tokenizer.eos_token_id is None:
        # Training appends eos to every target (methods.training.encode_example) and generation stops at it.
        raise ValueError(
            f"{tokenizer_location}: the tokenizer has no `eos_token` (training appends it to every target and "
            "generation stops at it); set eos_token in its tokenizer_config.json"
        )
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ValueError(
            f"{tokenizer_location}: the tokenizer has {len(tokenizer)} tokens but the model in {model_location} has "
            f"{rows} input embedding rows; token ids past {rows - 1} cannot be embedded (use the model's own tokenizer)"
        )


def load_model(
    name_or_path: str | Path, gguf_file: str | None = None, device: str = "auto", dtype: str = "float32",
    tokenizer_path: str | Path | None = None, tokenizer_hint: str = "",
):  # fmt: skip
    """Return (model in eval mode with frozen weights, tokenizer ready for left-padded batches).

    The tokenizer comes from `tokenizer_path` when given, else from the model's own folder, hub id or GGUF file;
    `tokenizer_hint` says how the caller's input names another tokenizer (for the error when there is none).
    """
    if dtype not in DTYPES:
        raise ValueError(f"--dtype: unknown dtype '{dtype}'; valid: {', '.join(DTYPES)}")
    extra = {"gguf_file": gguf_file} if gguf_file else {}
    tokenizer_location = str(tokenizer_path or name_or_path)
    if not gguf_file or tokenizer_path:
        check_tokenizer_folder(tokenizer_location, tokenizer_hint)
    tokenizer_extra = {} if tokenizer_path else extra
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(tokenizer_location, **tokenizer_extra))
    model = AutoModelForCausalLM.from_pretrained(str(name_or_path), dtype=DTYPES[dtype], **extra)
    check_tokenizer_fits(tokenizer, model, tokenizer_location, str(name_or_path))
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
