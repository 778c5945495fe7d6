"""Train a byte-level BPE tokenizer (the `tokenizers` library) and wrap it for `transformers`."""

from __future__ import annotations

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from bench.models import prepare_tokenizer

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def train_tokenizer(texts: list[str], vocab_size: int, number_tokens: int = 0) -> PreTrainedTokenizerFast:
    """A byte-level BPE over `texts` (any script: every byte is in the alphabet), adding <s> before each text.

    Digits are split one by one so that every number is spelled with the same ten tokens in every language; with
    `number_tokens` > 0 the integers 0 .. number_tokens - 1 are single tokens on top of the `vocab_size` BPE tokens
    (longest match first, so "345" with 200 number tokens reads "34" "5").
    """
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # A number as one token: copying it from the question, or recalling "7 + 5 = 12", is one step, not a digit
    # sequence (measured: with digits split, the 1M-parameter base model copied operands but got the sums wrong).
    tokenizer.add_tokens([AddedToken(str(number), normalized=False) for number in range(number_tokens)])
    bos = SPECIAL_TOKENS["bos_token"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tokenizer.token_to_id(bos))]
    )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, **SPECIAL_TOKENS)
    return prepare_tokenizer(wrapped)
