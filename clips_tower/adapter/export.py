"""Write a tower as a Hugging Face vision-model directory (config + safetensors + image processor).

    from clips_tower.adapter import export_tower
    export_tower("configs/clips/models/tiny.json", "runs/towers/tiny", random_init=True)
    export_tower("clips-l14-336", "runs/towers/clips-l14-336")           # needs the hub (or its cache)

The directory loads with stock `AutoModel` / `AutoImageProcessor` (no remote code, no import of this
project) and its config is what `LlavaConfig(vision_config=...)` takes. `tower_info.json` records
the source and the LLaVA settings (its `llava` block: `clips_tower.adapter.tower_facts`). The directory is written to a temporary sibling and renamed, so a
crash never leaves a half-written tower behind.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clips_tower.adapter.convert import convert_visual
from clips_tower.adapter.processors import processor_from_preprocess
from clips_tower.adapter.sources import SourceTower, load_source
from clips_tower.adapter.tower_facts import TOWER_INFO, llava_block, read_tower_info  # noqa: F401  (re-exported)
from clips_tower.io import atomic_dir


def hf_tower(src: SourceTower):
    """(HF vision model, image processor) for a loaded source; open_clip towers are converted exactly."""
    if src.kind == "hf_clip":
        return src.hf_model, src.hf_processor
    return convert_visual(src.visual), processor_from_preprocess(src.preprocess_cfg)


def tower_info(src: SourceTower, model) -> dict[str, Any]:
    c = model.config
    spec = src.spec
    layer = spec.vision_feature_layer if spec else -2
    strategy = spec.vision_feature_select_strategy if spec else "default"
    return {
        "format": "clips-llava-tower/1",
        "registry_name": spec.name if spec else None,
        **src.info,
        "hf_class": type(model).__name__,
        "image_size": c.image_size,
        "patch_size": c.patch_size,
        "preprocess_cfg": src.preprocess_cfg,
        "llava": llava_block(c, layer, strategy),
    }


def write_tower_dir(model, processor, info: dict[str, Any], out_dir: str | Path, overwrite: bool = False) -> Path:
    """Save model + processor + tower_info.json atomically (temp dir + rename)."""
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)  # safetensors
        processor.save_pretrained(tmp)
        (tmp / TOWER_INFO).write_text(json.dumps(info, indent=2, default=list) + "\n")
    return out


def export_source(src: SourceTower, out_dir: str | Path, overwrite: bool = False) -> tuple[Path, Any]:
    """Export an already-loaded source; returns (directory, in-memory HF model)."""
    model, processor = hf_tower(src)
    return write_tower_dir(model, processor, tower_info(src, model), out_dir, overwrite=overwrite), model


def export_tower(source: str, out_dir: str | Path, random_init: bool = False, *, seed: int = 0,
                 preprocess: str | None = None, overwrite: bool = False) -> Path:
    """Export `source` (registry name, open_clip dir/hub name/architecture, HF CLIP id/dir) to `out_dir`."""
    src = load_source(source, random_init=random_init, seed=seed, preprocess=preprocess)
    path, _ = export_source(src, out_dir, overwrite=overwrite)
    return path

