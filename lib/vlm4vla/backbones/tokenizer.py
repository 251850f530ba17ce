"""Tokenizers trained here (byte-level BPE, ``tokenizers`` library): no hub downloads, ever.

Byte-level BPE can encode any text (unseen words fall back to bytes), so a tokenizer trained on the
general corpus still reads robot instructions; ``DEFAULT_TEXTS`` adds the robot vocabulary so those
words get their own merges.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

ROBOT_WORDS = (
    "What action should the robotic arm take to pick place push pull open close press reach turn "
    "slide lift put stack the drawer door window button handle faucet lever block cube puck peg "
    "hole bin shelf plate mug cup top down left right front back side on in into from onto red "
    "green blue yellow purple orange white black wall goal target table gripper slider switch "
    "light bulb lightblock pink"
)
DEFAULT_TEXTS = (ROBOT_WORDS,)
SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")


def all_special_tokens(special_tokens: Mapping[str, Any]) -> list[str]:
    """Every special token string of a family's spec, named ones first, without duplicates."""
    named = [special_tokens[k] for k in SPECIAL_KEYS if special_tokens.get(k)]
    return list(dict.fromkeys([*named, *special_tokens.get("additional", ())]))


def train_tokenizer(texts: Iterable[str] | None, vocab_size: int,
                    special_tokens: Mapping[str, Any]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer of ``vocab_size`` (+ specials) wrapped for transformers.

    ``special_tokens``: ``bos_token`` / ``eos_token`` / ``pad_token`` / ``unk_token`` strings and an
    ``additional`` sequence (image token, chat tokens). Deterministic for the same texts.
    """
    specials = all_special_tokens(special_tokens)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus: Sequence[str] = list(texts or ()) + list(DEFAULT_TEXTS)
    tok.train_from_iterator(sorted(set(corpus)), trainer=trainer)
    named = {k: special_tokens[k] for k in SPECIAL_KEYS if special_tokens.get(k)}
    extra = [t for t in specials if t not in named.values()]
    return PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=extra, **named)
