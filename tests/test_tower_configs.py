"""The open_clip architecture JSONs in configs/clips/models: fields, and that open_clip builds them."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch

from clips_tower.adapter.registry import CONFIG_DIR, TOWERS, arch_json, get_tower

NAMES = ["ViT-L-14-CLIPS-224", "ViT-L-14-CLIPS-336", "ViT-H-14-CLIPS-224", "tiny", "demo"]
# (vision width, layers, heads, image size, text width, text layers, embed_dim, vision params in M)
PUBLISHED = {
    "ViT-L-14-CLIPS-224": (1024, 24, 16, 224, 768, 12, 768, 304.0),
    "ViT-L-14-CLIPS-336": (1024, 24, 16, 336, 768, 12, 768, 304.3),
    "ViT-H-14-CLIPS-224": (1280, 32, 16, 224, 1024, 24, 1024, 632.1),
}


def _build(name):
    cfg = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    cfg.pop("captioner_cfg", None)  # ours, not open_clip's
    with torch.device("meta"):  # shapes only: no memory, no init time
        return cfg, open_clip.CLIP(**cfg)


@pytest.mark.parametrize("name", NAMES)
def test_config_builds_with_open_clip(name):
    cfg, model = _build(name)
    v = cfg["vision_cfg"]
    assert v["no_ln_pre"] and v["pool_type"] == "avg" and v["final_ln_after_pool"]
    assert v["norm_kwargs"] == {"eps": 1e-6}
    assert isinstance(model.visual.ln_pre, torch.nn.Identity)
    assert model.visual.ln_post.eps == 1e-6
    assert model.transformer.resblocks[0].ln_1.eps == 1e-6
    assert model.transformer.resblocks[0].mlp.gelu.approximate == "tanh"  # text: GELU-tanh
    assert model.visual.transformer.resblocks[0].mlp.gelu.approximate == "none"  # vision: plain GELU
    if name in PUBLISHED:
        width, layers, heads, size, t_width, t_layers, embed, params = PUBLISHED[name]
        blk = model.visual.transformer.resblocks[0]
        assert (blk.attn.embed_dim, len(model.visual.transformer.resblocks), blk.attn.num_heads) == (width, layers, heads)
        assert model.visual.image_size == (size, size) and model.visual.patch_size == (14, 14)
        assert (model.transformer.width, len(model.transformer.resblocks)) == (t_width, t_layers)
        assert model.text_projection.shape[1] == embed
        assert sum(p.numel() for p in model.visual.parameters()) / 1e6 == pytest.approx(params, abs=0.1)
        t = cfg["text_cfg"]
        assert (t["vocab_size"], t["context_length"], t["pool_type"], t["no_causal_mask"]) == (32000, 80, "last", True)
        assert (t["hf_tokenizer_name"], t["tokenizer_mode"]) == ("bert-base-uncased", "clips")
    else:
        assert "hf_tokenizer_name" not in cfg["text_cfg"] and cfg["text_cfg"]["vocab_size"] == 49408


def test_embedded_presets_shapes_and_tokenizer():
    _, tiny = _build("tiny")
    _, demo = _build("demo")
    assert tiny.visual.image_size == (32, 32) and tiny.visual.conv1.out_channels == 64
    assert len(tiny.visual.transformer.resblocks) == 3 and tiny.visual.transformer.resblocks[0].attn.num_heads == 4
    assert tiny.context_length == 64 and tiny.text_projection.shape == (64, 32)
    assert demo.visual.image_size == (48, 48) and len(demo.visual.transformer.resblocks) == 4
    assert demo.context_length == 96 and demo.text_projection.shape == (128, 64)
    tok = open_clip.get_tokenizer("ViT-B-32", context_length=64)  # bundled CLIP BPE, offline
    assert tok(["a red cube"]).shape == (1, 64)


def test_registry_exact_keys():
    for name in ("clips-l14-336", "clips-l14-224", "clips-h14-224", "openai-clip-l14-336", "tiny", "demo"):
        spec = get_tower(name)
        assert spec.vision_feature_layer == -2 and spec.vision_feature_select_strategy == "default"
        assert arch_json(spec.arch) is not None or open_clip.get_model_config(spec.arch) is not None
    assert get_tower("clips-l14-336").num_image_tokens == 576
    assert get_tower("clips-h14-224").num_image_tokens == 256
    with pytest.raises(ValueError, match="known towers: clips-l14-336"):
        get_tower("clips-L14-336")  # exact keys only
    assert set(TOWERS) >= {"tiny", "demo"}
