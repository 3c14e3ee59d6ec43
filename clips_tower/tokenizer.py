"""Text tokenizers for CLIPS pretraining: caption -> token ids, and ids -> a tower's text format.

    from clips_tower.tokenizer import build_tokenizer
    tok = build_tokenizer(arch["text_cfg"])           # open_clip's bundled CLIP BPE for the embedded presets
    ids = tok.encode("a red cube. a blue ball.")      # list[int], no special tokens
    batch = tok.pack([ids[:8], ids], length=12)      # (2, 12) LongTensor in the tower's format

Token reduction (`text_reduction.py`) works on plain id lists, so the tokenizer exposes encoding
without specials and packing separately. Two formats, both open_clip's own:

- CLIP BPE (`SimpleTokenizer`, no `hf_tokenizer_name`): [sot] tokens [eot] 0 ... 0; pooled at
  the eot (argmax) under a causal mask, so trailing padding never changes the features and a
  batch may be packed to its longest row (shorter text is where CLIPS saves compute).
- CLIPS (`tokenizer_mode: clips`, BERT WordPiece): [bos=1] tokens [eos=2] 0 ... 0 [cls=101]
  in the last slot, pooled at the last position without a causal mask.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

# The CLIPS text format (open_clip `tokenizer_mode='clips'`, the CLIPS configs): bos, eos, pad and the class token in the last slot.
CLIPS_SPECIALS = {"bos": 1, "eos": 2, "pad": 0, "cls": 101}


class TokenizerUnavailableError(RuntimeError):
    """The architecture's tokenizer vocabulary cannot be loaded here (offline, not cached)."""


@dataclass
class TextTokenizer:
    encode: Callable[[str], list[int]]  # caption -> ids without special tokens
    bos_id: int
    eos_id: int
    pad_id: int
    cls_id: int | None  # CLIPS format only: the class token in the last slot
    context_length: int
    hf_tokenizer: object | None = None  # kept so an export can save the vocabulary files

    @property
    def n_special(self) -> int:
        """Slots a packed row spends on special tokens."""
        return 3 if self.cls_id is not None else 2

    @property
    def trailing_pad_invariant(self) -> bool:
        """True when features do not depend on how much padding follows the eos (CLIP BPE format)."""
        return self.cls_id is None

    def pack(self, seqs: list[list[int]], length: int | None = None) -> torch.Tensor:
        """Ids (no specials) -> (B, length) LongTensor; length defaults to the longest row, capped at context."""
        room = self.context_length - self.n_special
        seqs = [list(s[:room]) for s in seqs]
        if length is None:
            length = max(len(s) for s in seqs) + self.n_special
        length = min(length, self.context_length)
        out = torch.full((len(seqs), length), self.pad_id, dtype=torch.long)
        for i, s in enumerate(seqs):
            s = s[: length - self.n_special]
            row = [self.bos_id, *s, self.eos_id]
            out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            if self.cls_id is not None:
                out[i, -1] = self.cls_id
        return out


def build_tokenizer(text_cfg: dict) -> TextTokenizer:
    """The tokenizer an open_clip `text_cfg` implies (same rule as `open_clip.get_tokenizer`)."""
    context_length = int(text_cfg.get("context_length", 77))
    hf_name = text_cfg.get("hf_tokenizer_name")
    if not hf_name:
        from open_clip.tokenizer import SimpleTokenizer

        simple = SimpleTokenizer(context_length=context_length)
        return TextTokenizer(
            encode=simple.encode, bos_id=simple.sot_token_id, eos_id=simple.eot_token_id,
            pad_id=0, cls_id=None, context_length=context_length,
        )
    mode = text_cfg.get("tokenizer_mode")
    if mode != "clips":
        raise ValueError(f"text_cfg.tokenizer_mode {mode!r} is not supported for pretraining; known: 'clips'")
    from open_clip.tokenizer import HFTokenizer

    try:
        hf = HFTokenizer(hf_name, context_length=context_length, tokenizer_mode="clips",
                         **(text_cfg.get("tokenizer_kwargs") or {}))
    except (OSError, ValueError) as e:
        raise TokenizerUnavailableError(
            f"the CLIPS tokenizer needs the {hf_name!r} vocabulary from the Hugging Face hub, which is not "
            f"available here (offline and not cached): {str(e).splitlines()[0]}"
        ) from None

    def encode(text: str) -> list[int]:
        return hf.tokenizer(hf.clean_fn(text), add_special_tokens=False)["input_ids"]

    return TextTokenizer(
        encode=encode, bos_id=CLIPS_SPECIALS["bos"], eos_id=CLIPS_SPECIALS["eos"], pad_id=CLIPS_SPECIALS["pad"],
        cls_id=CLIPS_SPECIALS["cls"], context_length=context_length, hf_tokenizer=hf,
    )
