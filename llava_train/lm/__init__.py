"""The small Llama-architecture LM for the embedded world: presets, BPE tokenizer, init, pretrain.

    clips-llava lm init --preset tiny --data runs/world --out runs/lm-init
    clips-llava lm pretrain --model runs/lm-init --data runs/world --out runs/lm --steps 200
"""
from llava_train.lm.build import init_lm, pretrain_lm, train_tokenizer
from llava_train.lm.presets import LM_PRESETS, get_lm_preset

__all__ = ["LM_PRESETS", "get_lm_preset", "init_lm", "pretrain_lm", "train_tokenizer"]
