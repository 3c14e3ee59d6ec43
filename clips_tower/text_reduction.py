"""CLIPS token reduction: which K tokens of a synthetic caption the text encoder sees.

    from clips_tower.text_reduction import get_strategy, split_sentences
    reduce = get_strategy("subcaption")
    ids = reduce([tok.encode(s) for s in split_sentences(caption)], k=32, rng=random.Random(0))

Every strategy takes the caption as a list of sentences (each a list of token ids, no specials),
a length K and a `random.Random`, and returns at most K ids (`full` returns everything; packing
caps it at the context length). The paper's finding is that sub-caption and block mask work best
and that shorter K helps (the "inverse effect"). The rng is derived from (seed, rank, sample
index) by the data pipeline, so the choice is reproducible across resumes.
"""
from __future__ import annotations

import random
import re
from typing import Callable

from clips_tower.io import lookup

Sentences = list[list[int]]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> list[str]:
    """Split a caption after '.', '!' or '?' followed by whitespace; empty pieces are dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _flat(sentences: Sentences) -> list[int]:
    return [t for s in sentences for t in s]


def full(sentences: Sentences, k: int, rng: random.Random) -> list[int]:
    """No reduction (the control): the whole caption."""
    return _flat(sentences)


def truncation(sentences: Sentences, k: int, rng: random.Random) -> list[int]:
    """The first K tokens."""
    return _flat(sentences)[:k]


def random_mask(sentences: Sentences, k: int, rng: random.Random) -> list[int]:
    """K tokens drawn at random without replacement, kept in their original order."""
    flat = _flat(sentences)
    if len(flat) <= k:
        return flat
    keep = sorted(rng.sample(range(len(flat)), k))
    return [flat[i] for i in keep]


def block(sentences: Sentences, k: int, rng: random.Random) -> list[int]:
    """One contiguous span of K tokens starting at a random position."""
    flat = _flat(sentences)
    if len(flat) <= k:
        return flat
    start = rng.randint(0, len(flat) - k)
    return flat[start : start + k]


def subcaption(sentences: Sentences, k: int, rng: random.Random) -> list[int]:
    """Whole sentences chosen at random until K tokens are used, emitted in caption order.

    Sentences are visited in a random order and kept when they still fit; if not even the first
    visited sentence fits, its first K tokens are used (a long single sentence is truncated).
    """
    if not sentences:
        return []
    order = list(range(len(sentences)))
    rng.shuffle(order)
    chosen, used = [], 0
    for i in order:
        if used + len(sentences[i]) <= k:
            chosen.append(i)
            used += len(sentences[i])
    if not chosen:
        return list(sentences[order[0]][:k])
    return _flat([sentences[i] for i in sorted(chosen)])


Strategy = Callable[[Sentences, int, random.Random], list[int]]

STRATEGIES: dict[str, Strategy] = {
    "full": full,
    "truncation": truncation,
    "random": random_mask,
    "block": block,
    "subcaption": subcaption,
}


def get_strategy(name: str) -> Strategy:
    """Exact-key lookup; ValueError listing the known strategies."""
    return lookup(STRATEGIES, name, "token-reduction strategy")
