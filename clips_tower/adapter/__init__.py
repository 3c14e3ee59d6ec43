"""Vision-tower adapter: any CLIPS / open_clip / OpenAI-CLIP tower as an exact, HF-native LLaVA tower.

    clips-llava tower export --model configs/clips/models/tiny.json --random-init --out runs/towers/tiny
    clips-llava tower check  --model configs/clips/models/tiny.json --random-init --out runs/towers/tiny

Public API (stable names, used by LLaVA training):
    export_tower(source, out_dir, random_init=False) -> Path
    load_tower_processor(tower_dir) -> CLIPImageProcessor (exact PIL backend)
    load_tower_model(tower_dir) -> ViTModel | CLIPVisionModel
    tower_llava_block(tower_dir_or_vision_config) -> the tower's `llava` block (feature layer, strategy,
        image_seq_length, num_additional_image_tokens): what tower_info.json records, else `llava_block`
    vision_config(tower_dir) ; read_tower_info(tower_dir)
    get_tower(name) -> TowerSpec ; TOWERS ; to_rgb(image)

The adapter states tower facts only; the LLaVA side (projector, image token, LlavaConfig, processor)
is `llava_train.llava_config`.
"""
from __future__ import annotations

from clips_tower.adapter.export import export_tower
from clips_tower.adapter.processors import load_tower_processor, to_rgb
from clips_tower.adapter.registry import TOWERS, TowerSpec, get_tower
from clips_tower.adapter.tower_facts import llava_block, read_tower_info, tower_llava_block, vision_config


def load_tower_model(tower_dir):
    """The exported vision model, via stock `AutoModel` (fp32)."""
    import torch
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(tower_dir), dtype=torch.float32)


__all__ = [
    "TOWERS", "TowerSpec", "export_tower", "get_tower", "llava_block", "load_tower_model",
    "load_tower_processor", "read_tower_info", "to_rgb", "tower_llava_block", "vision_config",
]
