"""Rendering matches the captions: each object's colour is where its metadata says, text is drawn.

    HF_HUB_OFFLINE=1 .venv/bin/pytest -q tests/test_world_render.py
"""
from __future__ import annotations

import numpy as np
import pytest

from clips_tower.world.captions import synthetic_caption, web_caption
from clips_tower.world.presets import get_preset
from clips_tower.world.scene import COLORS, render_scene, sample_scene
from clips_tower.world.signs import render_chart, render_sign, sample_chart, sample_sign


@pytest.mark.parametrize("size", [32, 64])
def test_each_object_has_its_colour_at_its_cell(size):
    for seed in range(20):
        scene = sample_scene(np.random.default_rng(seed), 1, 6)
        pixels = np.asarray(render_scene(scene, size), dtype=np.float32)  # (S, S, 3)
        assert pixels.shape == (size, size, 3)
        cell = size / 3
        for obj in scene.objects:
            x = int((obj.col + 0.5 + obj.jitter[0]) * cell)
            y = int((obj.row + 0.5 + obj.jitter[1]) * cell)
            patch = pixels[y - 1:y + 1, x - 1:x + 1].reshape(-1, 3).mean(0)
            distances = {c: np.abs(patch - np.array(rgb)).mean() for c, rgb in COLORS.items()}
            assert min(distances, key=distances.get) == obj.color, (seed, obj, patch)


def test_web_captions_are_noisy_and_synthetic_captions_accurate():
    kinds = {"wrong colour": 0, "uninformative": 0}
    for seed in range(300):
        rng = np.random.default_rng(seed)
        scene = sample_scene(rng, 1, 6)
        web = web_caption(scene, rng, seed).lower()
        named = [f"{c} {s}" for c in COLORS for s in ("circle", "square", "triangle", "star", "cross", "diamond")
                 if f"{c} {s}" in web]
        kinds["wrong colour"] += any(n not in scene.names for n in named)
        kinds["uninformative"] += not any(o.shape in web or o.color in web for o in scene.objects)
        syn = synthetic_caption(scene, rng)
        assert syn.count(".") >= len(scene.objects) + 2  # one sentence per object + intro + layout
    assert 30 <= kinds["wrong colour"] <= 120 and kinds["uninformative"] >= 30, kinds


def test_signs_and_charts_draw_ink():
    for seed in range(10):
        sign = sample_sign(np.random.default_rng(seed))
        pixels = np.asarray(render_sign(sign, 64), dtype=np.float32)
        ink = np.abs(pixels - np.array(COLORS[sign.ink])).mean(-1) < 60
        assert ink.sum() > 20, sign  # the text's pixels are there
        chart = sample_chart(np.random.default_rng(seed))
        assert chart.values.count(max(chart.values)) == 1
        assert np.asarray(render_chart(chart, 64)).std() > 20


def test_presets_registry_is_exact():
    assert get_preset("tiny").image_size == 32 and get_preset("demo").image_size == 48
    with pytest.raises(ValueError, match="known: tiny, demo"):
        get_preset("Tiny")
    with pytest.raises(ValueError, match="max_objects"):
        get_preset("tiny", max_objects=7)
