"""The tiny world's tokenizer: a real Hugging Face tokenizer shared by teacher and student.

Byte-level BPE trained on the task corpus, with digits split into single tokens first (so
numbers are spelled digit by digit, which tiny models learn arithmetic from far more easily,
and `\\boxed{42}` always tokenizes the same way). Byte-level means decode(encode(text)) is the
text exactly, for any text. Wrapped as `PreTrainedTokenizerFast` with `<bos>`, `<eos>`,
`<pad>`; encoding prepends `<bos>`; padding is on the left (the rollout layout).
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from scope_lib.worlds import chain as tasks

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"


def build_tokenizer(vocab_size: int = 320, corpus_size: int = 2000, seed: int = 0,
                    texts: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE on `corpus_size` chain-task texts (or on `texts`, another task's
    corpus); deterministic given the arguments.

    The 256 byte symbols are always present, so `vocab_size` - 259 is the number of merges.
    """
    if vocab_size < 260:
        raise ValueError(f"vocab_size: expected >= 260 (256 bytes + 3 specials + merges), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts if texts is not None else tasks.corpus(corpus_size, seed=seed), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with `save_pretrained` (left padding restored)."""
    tok = PreTrainedTokenizerFast.from_pretrained(str(path))
    tok.padding_side = "left"
    return tok
