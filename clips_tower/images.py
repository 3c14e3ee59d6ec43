"""Strict image decoding shared by every loader (CLIPS shards, LLaVA data, retrieval, chat).

`load_rgb(src)` fully decodes a path, file object or bytes and converts it to RGB the way the
exported processors expect (`clips_tower.adapter.processors.to_rgb`: 16-bit scaled to 8 bits,
transparency composited on white). Truncated files are always errors here: lmms-eval sets PIL's
process-wide `ImageFile.LOAD_TRUNCATED_IMAGES = True` when imported, and a loader relying on the
default would then silently train on, or answer about, half-grey images.
"""
from __future__ import annotations

import io
import threading
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile

_FLAG_LOCK = threading.Lock()  # the PIL flag is global; DataLoader threads may decode concurrently


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
    from clips_tower.adapter.processors import to_rgb

    return to_rgb(open_image(src))
