"""Language-model presets for the embedded world: a registry of Llama-architecture sizes.

    from llava_train.lm.presets import get_lm_preset
    get_lm_preset("tiny")   # {"hidden_size": 64, ...}

Real runs bring a pretrained LM by name or directory (`lmsys/vicuna-7b-v1.5`); these presets exist
only because nothing can be downloaded here. `tiny` is for tests, `demo` for `clips-llava demo`.
"""
from __future__ import annotations

from clips_tower.io import lookup

# name -> LlamaConfig fields + tokenizer vocabulary size. Exact keys only.
LM_PRESETS: dict[str, dict] = {
    "tiny": dict(
        vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
    ),
    "demo": dict(
        vocab_size=2048, hidden_size=192, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=2048,
    ),
}


def get_lm_preset(name: str) -> dict:
    """The preset's fields (a copy); unknown names raise ValueError listing the known ones."""
    return dict(lookup(LM_PRESETS, name, "LM preset"))
