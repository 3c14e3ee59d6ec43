"""Parity of the exported HF towers with open_clip on the exact published shapes (random weights, CPU).

Each case: seeded random weights of the published architecture (biases and LayerNorm affines
randomised too), exact conversion, then pixels on all test images and layer -2 patch tokens on one
image, at fp32 1e-5 relative. One ViT-L case goes through the saved directory (AutoModel reload).
"""
from __future__ import annotations

import gc

import pytest
import torch

from clips_tower.adapter.export import export_source, hf_tower
from clips_tower.adapter.parity import check_parity
from clips_tower.adapter.sources import load_source

CASES = [  # (registry name, expected HF class, tokens)
    ("clips-l14-336", "ViTModel", 576),
    ("clips-l14-224", "ViTModel", 256),
    ("clips-h14-224", "ViTModel", 256),
    ("openai-clip-l14-336", "CLIPVisionModel", 576),
]


@pytest.mark.parametrize("name,hf_class,tokens", CASES, ids=[c[0] for c in CASES])
def test_published_shape_parity(name, hf_class, tokens, tmp_path):
    src = load_source(name, random_init=True, seed=0)
    if name == "clips-l14-224":  # through the directory, as `tower check` does
        exported, model = export_source(src, tmp_path / name)
    else:
        model, processor = hf_tower(src)
        exported = (model, processor)
    assert type(model).__name__ == hf_class
    report = check_parity(src, exported, token_images=1)
    print(report.format())
    assert report.ok, report.format()
    token_row = [r for r in report.rows if r["what"].startswith("layer -2")][0]
    assert f"(1, {tokens}, " in token_row["what"]
    assert token_row["max_rel"] < 1e-5
    del src, model, exported, report
    gc.collect()


def test_parity_detects_wrong_weights():
    """The check can fail: a different seed (other weights) or one swapped mapping is caught."""
    src = load_source("tiny", random_init=True, seed=0)
    other = hf_tower(load_source("tiny", random_init=True, seed=1))
    assert not check_parity(src, other).ok
    model, processor = hf_tower(src)
    with torch.no_grad():  # swap the two LayerNorms of one block: only the norm affines differ
        layer = model.layers[1]
        w = layer.layernorm_before.weight.clone()
        layer.layernorm_before.weight.copy_(layer.layernorm_after.weight)
        layer.layernorm_after.weight.copy_(w)
    assert not check_parity(src, (model, processor)).ok


def test_bfloat16_check_runs_tiny():
    src = load_source("demo", random_init=True, seed=0)
    report = check_parity(src, hf_tower(src), dtype="bfloat16", token_images=2)
    assert report.ok, report.format()
    base = [r for r in report.rows if "baseline" in r["what"]][0]
    assert 0 < base["max_rel"] < 0.05  # bf16 really ran (non-zero error), and is sane
