"""Images for every package: strict decoding shared by every loader (CLIPS shards, LLaVA data,
retrieval, chat), the RGB conversion in front of every processor, and the towers' preprocessing
recipes (`PREPROCESS`). A leaf: it imports nothing else of the project.

`load_rgb(src)` fully decodes a path, file object or bytes and converts it to RGB the way the
exported processors expect (`to_rgb`: 16-bit scaled to 8 bits, transparency composited on white). Truncated files are always errors here: lmms-eval sets PIL's
process-wide `ImageFile.LOAD_TRUNCATED_IMAGES = True` when imported, and a loader relying on the
default would then silently train on, or answer about, half-grey images.
"""
from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile

# Image preprocessing recipes, in open_clip's `preprocess_cfg` vocabulary.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
PREPROCESS = {
    # CLIPS: squash straight to the square size, bilinear, ImageNet statistics (the CLIPS open_clip configs).
    "clips": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "interpolation": "bilinear", "resize_mode": "squash"},
    # OpenAI CLIP: shortest side to size, bicubic, center crop, CLIP statistics.
    "openai": {"mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic", "resize_mode": "shortest"},
}

_FLAG_LOCK = threading.Lock()  # the PIL flag is global; DataLoader threads may decode concurrently
# Modes PIL's RGB conversion saturates (a 16-bit value of 1000 becomes 255), and so does the stock
# CLIPImageProcessor: `to_8bit` scales them to 8 bits first.
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit / 32-bit integer / float images to 8-bit 'L'; other modes pass through unchanged."""
    if image.mode not in WIDE_MODES:
        return image
    a = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and a.max(initial=0) > 255):
        a = a / 257.0  # 0..65535 -> 0..255
    elif image.mode == "F" and a.max(initial=0) <= 1.0:
        a = a * 255.0  # float images in [0, 1]
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))  # (H, W) uint8 -> L


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image -> RGB: wide modes scaled to 8 bits, transparency composited on white."""
    image = to_8bit(image)
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def open_image(src: str | Path | bytes | BinaryIO) -> Image.Image:
    """Decode `src` completely (raises OSError / PIL errors on corrupt or truncated data)."""
    if isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(src)
    with _FLAG_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with Image.open(src) as im:
                im.load()
                return im
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def load_rgb(src: str | Path | bytes | BinaryIO) -> Image.Image:
    """`open_image` then RGB conversion matching the exported tower processors."""
    return to_rgb(open_image(src))
