"""The LLaVA facts around a tower: the projector registry, the stock `LlavaConfig`, the processor's settings.

    from clips_tower.adapter import tower_llava_block, vision_config
    from llava_train.llava_config import build_llava_config, llava_processor_kwargs
    vcfg = vision_config("runs/towers/tiny")
    block = tower_llava_block("runs/towers/tiny", vcfg)
    cfg = build_llava_config(vcfg, LlamaConfig(...), image_token_index=5, llava=block)
    model = LlavaForConditionalGeneration(cfg)

What the tower outputs (feature layer, strategy, `image_seq_length`, extra tokens) comes from its
`llava` block (`clips_tower.adapter.tower_facts`: tower_info.json, or derived from the vision config
of a plain HF tower); both the LlavaConfig and the processor are built from that one block. The
projector is LLaVA-1.5's `mlp2x_gelu` (Linear -> GELU -> Linear) by default (`mm_projector_type`).
"""
from __future__ import annotations

from typing import Any

from clips_tower.adapter.tower_facts import tower_llava_block, vision_config
from clips_tower.io import lookup

# Projector registry: name -> LlavaConfig fields. HF Llava's projector is always linear_1 -> act -> linear_2.
PROJECTORS: dict[str, dict[str, Any]] = {
    "mlp2x_gelu": {"projector_hidden_act": "gelu", "multimodal_projector_bias": True},
}


def get_projector(name: str) -> dict[str, Any]:
    return dict(lookup(PROJECTORS, name, "projector"))


def _check_layer(layer, vision_config) -> None:
    n_layers = vision_config.num_hidden_layers
    for one in (layer if isinstance(layer, list) else [layer]):
        if not -(n_layers + 1) <= one <= n_layers:
            raise ValueError(f"vision_feature_layer {one} out of range for a {n_layers}-layer tower")


def build_llava_config(tower, text_config, *, image_token_index: int, projector: str = "mlp2x_gelu",
                       llava: dict[str, Any] | None = None):
    """LlavaConfig(vision_config=<tower>, text_config=<any HF causal LM config or dict>) with the tower's
    `llava` block (default: `tower_llava_block(tower)`) and the named projector.
    `tower`: an exported tower directory or its vision PretrainedConfig."""
    from transformers import LlavaConfig

    vcfg = vision_config(tower)
    block = llava if llava is not None else tower_llava_block(tower, vcfg)
    _check_layer(block["vision_feature_layer"], vcfg)
    return LlavaConfig(
        vision_config=vcfg,
        text_config=text_config,
        image_token_index=image_token_index,
        image_seq_length=block["image_seq_length"],
        vision_feature_layer=block["vision_feature_layer"],
        vision_feature_select_strategy=block["vision_feature_select_strategy"],
        **get_projector(projector),
    )


def llava_processor_kwargs(vision_config, llava: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments for `LlavaProcessor(...)` that make it expand `<image>` to the block's count."""
    return {"patch_size": vision_config.patch_size,
            "vision_feature_select_strategy": llava["vision_feature_select_strategy"],
            "num_additional_image_tokens": llava["num_additional_image_tokens"]}
