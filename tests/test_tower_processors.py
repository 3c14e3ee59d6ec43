"""Image processors vs open_clip preprocessing on odd images (sizes, modes), and `to_rgb`."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from clips_tower.adapter.processors import (load_tower_processor, open_clip_transform, processor_from_preprocess,
                                            sample_images, to_8bit, to_rgb)
from clips_tower.adapter.registry import PREPROCESS


def _cfg(recipe, size):
    return {"size": size, **PREPROCESS[recipe]}


def _pixels(proc, image):
    return torch.as_tensor(proc(image, return_tensors="pt")["pixel_values"][0])


@pytest.mark.parametrize("recipe,size", [("clips", 336), ("clips", 32), ("openai", 336)])
def test_processor_matches_open_clip_exactly(recipe, size):
    cfg = _cfg(recipe, size)
    proc, ref_t = processor_from_preprocess(cfg), open_clip_transform(cfg)
    extra = [("1x1", Image.new("RGB", (1, 1), (10, 200, 30))), ("odd-333x7", Image.fromarray(
        np.random.default_rng(1).integers(0, 256, (7, 333, 3), dtype=np.uint8))),
        ("bilevel-1", Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 30), dtype=np.uint8)).convert("1")),
        ("LA", Image.fromarray(np.random.default_rng(3).integers(0, 256, (50, 61, 2), dtype=np.uint8), "LA"))]
    for name, image in sample_images() + extra:
        ref = ref_t(to_rgb(image))
        got = _pixels(proc, to_8bit(image))
        assert got.shape == (3, size, size), name
        assert torch.equal(ref, got), f"{recipe} {name}: max diff {(ref - got).abs().max()}"


def test_openai_center_crop_rounding_known_difference():
    """Known, documented: when (resized side - crop) is odd, torchvision's CenterCrop rounds the offset
    half up and HF's CLIPImageProcessor floors it: the crops differ by exactly one pixel row/column."""
    cfg = _cfg("openai", 224)
    image = dict(sample_images())["portrait-rgba-201x333"]  # resized to 224x371: offset 73.5
    ref = open_clip_transform(cfg)(to_rgb(image))
    got = _pixels(processor_from_preprocess(cfg), image)
    assert not torch.equal(ref, got)
    assert torch.equal(got[:, 1:], ref[:, :-1])  # same pixels, one row lower in open_clip


def test_saved_processor_reload_exact(tmp_path):
    from transformers import AutoImageProcessor

    cfg = _cfg("clips", 64)
    processor_from_preprocess(cfg).save_pretrained(tmp_path)
    image = sample_images()[1][1]
    ref = open_clip_transform(cfg)(image)
    assert torch.equal(_pixels(load_tower_processor(tmp_path), image), ref)
    # stock default (torchvision backend): close but not exact (measured: within about 1/255)
    fast = (_pixels(AutoImageProcessor.from_pretrained(tmp_path), image) - ref).abs().max().item()
    assert fast < 0.03


def test_to_rgb_modes():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red -> white
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("RGBA", (4, 4), (255, 0, 0, 255))).getpixel((0, 0)) == (255, 0, 0)
    sixteen = Image.fromarray(np.array([[0, 257 * 100, 65535]], dtype=np.uint16))
    assert sixteen.mode == "I;16"
    assert to_rgb(sixteen).getpixel((1, 0)) == (100, 100, 100)
    assert sixteen.convert("RGB").getpixel((1, 0)) == (255, 255, 255)  # why we scale first: PIL saturates
    unit = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert [to_rgb(unit).getpixel((i, 0))[0] for i in range(3)] == [0, 128, 255]
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))
    assert to_rgb(cmyk).getpixel((0, 0)) == (255, 0, 0)
    for mode in ("L", "P", "1", "RGB"):
        assert to_rgb(Image.new(mode, (3, 5))).mode == "RGB"


def test_unsupported_preprocessing_refused():
    with pytest.raises(ValueError, match="resize_mode 'longest'"):
        processor_from_preprocess({"size": 32, **PREPROCESS["clips"], "resize_mode": "longest"})
    with pytest.raises(ValueError, match="interpolation"):
        processor_from_preprocess({"size": 32, **PREPROCESS["clips"], "interpolation": "lanczos"})
