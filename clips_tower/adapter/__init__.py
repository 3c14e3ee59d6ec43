"""Vision-tower adapter: any CLIPS / open_clip / OpenAI-CLIP tower as an exact, HF-native LLaVA tower.

    clips-llava tower export --source configs/clips/models/tiny.json --random-init --out runs/towers/tiny
    clips-llava tower check  --source configs/clips/models/tiny.json --random-init --exported runs/towers/tiny

Public API (stable names, used by LLaVA training):
    export_tower(source, out_dir, random_init=False) -> Path
    build_llava_config(tower_dir_or_vision_config, text_config, *, image_token_index, **overrides) -> LlavaConfig
    load_tower_processor(tower_dir) -> CLIPImageProcessor (exact PIL backend)
    load_tower_model(tower_dir) -> ViTModel | CLIPVisionModel
    llava_processor_kwargs(tower) -> kwargs for LlavaProcessor
    get_tower(name) -> TowerSpec ; TOWERS ; to_rgb(image)
"""
from __future__ import annotations

from clips_tower.adapter.export import export_tower, read_tower_info
from clips_tower.adapter.llava_config import PROJECTORS, build_llava_config, llava_processor_kwargs
from clips_tower.adapter.processors import load_tower_processor, to_rgb
from clips_tower.adapter.registry import TOWERS, TowerSpec, get_tower


def load_tower_model(tower_dir):
    """The exported vision model, via stock `AutoModel` (fp32)."""
    import torch
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(tower_dir), dtype=torch.float32)


__all__ = [
    "PROJECTORS", "TOWERS", "TowerSpec", "build_llava_config", "export_tower", "get_tower",
    "llava_processor_kwargs", "load_tower_model", "load_tower_processor", "read_tower_info", "to_rgb",
]
