"""Shared helpers for the tower-adapter tests (tests/test_tower_*.py)."""
from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY_JSON = REPO / "configs" / "clips" / "models" / "tiny.json"


def write_arch(tmp_path: Path, name: str, vision_cfg: dict, embed_dim: int = 16, **top) -> Path:
    """A small open_clip model JSON with the given vision_cfg (text tower irrelevant to the adapter)."""
    cfg = {"embed_dim": embed_dim, "vision_cfg": vision_cfg,
           "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1}, **top}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    return path


TINY_VISION = {"image_size": 16, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8,
               "no_ln_pre": True, "pool_type": "avg", "final_ln_after_pool": True, "norm_kwargs": {"eps": 1e-6}}
