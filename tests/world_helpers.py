"""Helpers for the synthetic-world tests: read a generated world back with plain libraries."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image


def pixel_hash(png: bytes | Path) -> str:
    """Content hash of a PNG's decoded pixels (independent of the generator's own helper)."""
    data = png.read_bytes() if isinstance(png, Path) else png
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
        return hashlib.sha256(rgb.tobytes() + repr(rgb.size).encode()).hexdigest()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tree(root: Path) -> list[str]:
    """Every path under root (files and folders), relative and sorted."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
