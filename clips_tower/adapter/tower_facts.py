"""What a tower gives LLaVA, in one place: the `llava` block of `tower_info.json`.

    from clips_tower.adapter.tower_facts import tower_llava_block, vision_config
    vcfg = vision_config("runs/towers/tiny")
    block = tower_llava_block("runs/towers/tiny", vcfg)
    # {"vision_feature_layer": -2, "vision_feature_select_strategy": "default",
    #  "image_seq_length": 16, "num_additional_image_tokens": 1}

`llava_block` derives the block from a vision config (patch grid, the class token, the feature
layer and strategy); `tower export` writes its result into `tower_info.json`, and LLaVA assembly
reads it back from there. A plain Hugging Face vision tower directory (no `tower_info.json`) gets
the block from the same `llava_block`, so the image-token count has one derivation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

TOWER_INFO = "tower_info.json"
NUM_ADDITIONAL_IMAGE_TOKENS = 1  # the class token, dropped by the "default" feature strategy


def tower_image_size(vision_config) -> int:
    """The tower's square input side: `image_size` is an int or an (H, W) pair in HF vision configs."""
    size = vision_config.image_size
    return size if isinstance(size, int) else size[0]


def tower_image_shape(vision_config) -> tuple[int, int, int]:
    """(channels, side, side) of one preprocessed image for this tower."""
    side = tower_image_size(vision_config)
    return vision_config.num_channels, side, side


def llava_block(vision_config, vision_feature_layer: int = -2,
                vision_feature_select_strategy: str = "default") -> dict[str, Any]:
    """The LLaVA settings of a tower with this vision config (anything with image_size and patch_size):
    image tokens = the patch grid, plus the class token under the "full" strategy."""
    patches = (tower_image_size(vision_config) // vision_config.patch_size) ** 2
    return {
        "vision_feature_layer": vision_feature_layer,
        "vision_feature_select_strategy": vision_feature_select_strategy,
        "image_seq_length": patches + (vision_feature_select_strategy == "full"),
        "num_additional_image_tokens": NUM_ADDITIONAL_IMAGE_TOKENS,
    }


def read_tower_info(tower_dir: str | Path) -> dict[str, Any] | None:
    """The tower directory's `tower_info.json` (None when it has none); InputError if it is unreadable."""
    from clips_tower.inputs import read_json_object

    path = Path(tower_dir) / TOWER_INFO
    return read_json_object(path, TOWER_INFO) if path.is_file() else None


def vision_config(tower):
    """The vision `PretrainedConfig` of a tower directory (or the config itself)."""
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(tower, PretrainedConfig):
        return tower
    if isinstance(tower, (str, Path)) and (Path(tower) / "config.json").is_file():
        return AutoConfig.from_pretrained(str(tower))
    raise ValueError(f"tower must be an exported tower directory or a vision PretrainedConfig, got {tower!r}")


def tower_llava_block(tower, config=None) -> dict[str, Any]:
    """The `llava` block `tower_info.json` records for an exported tower directory; for a plain HF vision
    tower (a directory without tower_info.json, or a config) the same block from `llava_block`.
    `config`: the tower's vision config when the caller has it loaded already."""
    from clips_tower.inputs import InputError

    recorded = read_tower_info(tower) if isinstance(tower, (str, Path)) else None
    if recorded is not None:
        block = recorded.get("llava")
        if not isinstance(block, dict):
            raise InputError(f"{Path(tower) / TOWER_INFO}: no 'llava' block "
                             "(export the tower again with `clips-llava tower export`)")
        return dict(block)
    return llava_block(config if config is not None else vision_config(tower))
