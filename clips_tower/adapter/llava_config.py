"""Build a stock `LlavaConfig` around an exported tower: the tower choice is one value.

    from clips_tower.adapter import build_llava_config
    cfg = build_llava_config("runs/towers/tiny", LlamaConfig(...), image_token_index=5)
    model = LlavaForConditionalGeneration(cfg)

LLaVA-1.5 settings: projector `mlp2x_gelu` (Linear -> GELU -> Linear), `vision_feature_layer=-2`,
`vision_feature_select_strategy="default"` (patch tokens; CLS dropped), `image_seq_length` from the
tower's image and patch size. Any LlavaConfig field can be overridden by keyword.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from clips_tower.io import lookup

# Projector registry: name -> LlavaConfig fields. HF Llava's projector is always linear_1 -> act -> linear_2.
PROJECTORS: dict[str, dict[str, Any]] = {
    "mlp2x_gelu": {"projector_hidden_act": "gelu", "multimodal_projector_bias": True},
}


def get_projector(name: str) -> dict[str, Any]:
    return dict(lookup(PROJECTORS, name, "projector"))


def _vision_config(tower):
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(tower, PretrainedConfig):
        return tower
    if isinstance(tower, (str, Path)) and (Path(tower) / "config.json").is_file():
        return AutoConfig.from_pretrained(str(tower))
    raise ValueError(f"tower must be an exported tower directory or a vision PretrainedConfig, got {tower!r}")


def build_llava_config(tower, text_config, *, image_token_index: int, projector: str = "mlp2x_gelu",
                       **overrides):
    """LlavaConfig(vision_config=<tower>, text_config=<any HF causal LM config or dict>, LLaVA-1.5 settings)."""
    from transformers import LlavaConfig

    vision_config = _vision_config(tower)
    strategy = overrides.get("vision_feature_select_strategy", "default")
    layer = overrides.get("vision_feature_layer", -2)
    n_layers = vision_config.num_hidden_layers
    for one in (layer if isinstance(layer, list) else [layer]):
        if not -(n_layers + 1) <= one <= n_layers:
            raise ValueError(f"vision_feature_layer {one} out of range for a {n_layers}-layer tower")
    patches = (vision_config.image_size // vision_config.patch_size) ** 2
    fields = dict(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=image_token_index,
        image_seq_length=patches + (1 if strategy == "full" else 0),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        **get_projector(projector),
    )
    fields.update(overrides)
    return LlavaConfig(**fields)


def llava_processor_kwargs(tower) -> dict[str, Any]:
    """Keyword arguments for `LlavaProcessor(...)` that make it expand `<image>` to the right count."""
    vision_config = _vision_config(tower)
    return {"patch_size": vision_config.patch_size, "vision_feature_select_strategy": "default",
            "num_additional_image_tokens": 1}
