"""Export a trained CLIPS tower as an open_clip directory that stock open_clip loads.

    from clips_tower.export import export_open_clip
    export_open_clip(model.clip, arch, "runs/clips-tiny/export")
    # then, in any environment with open_clip only:
    #   model, preprocess = open_clip.create_model_from_pretrained("local-dir:runs/clips-tiny/export")
    #   tokenizer = open_clip.get_tokenizer("local-dir:runs/clips-tiny/export")

The directory holds `open_clip_config.json` = {"model_cfg", "preprocess_cfg"} (only keys stock
open_clip understands: the training-only "captioner_cfg" is dropped) and
`open_clip_model.safetensors`, the layout of the published CLIPS checkpoints on the hub. It is
written to a temporary sibling directory and renamed into place, so a reader never sees half an
export. For the BERT-tokenizer (CLIPS) architectures the vocabulary files are saved alongside,
because open_clip's `local-dir:` tokenizer reads them from the directory.
"""
from __future__ import annotations

import json
from pathlib import Path

import open_clip
from safetensors.torch import save_file

from clips_tower.images import PREPROCESS
from clips_tower.io import atomic_dir
from clips_tower.model import open_clip_cfg

# CLIPS preprocessing (ImageNet statistics, bilinear, squash resize): the one recipe the exported tower's processor also uses,
# with JSON-style lists as open_clip configs hold them.
CLIPS_PREPROCESS = {k: list(v) if isinstance(v, tuple) else v for k, v in PREPROCESS["clips"].items()}


def preprocess_cfg(arch: dict) -> dict:
    """open_clip `preprocess_cfg` for an architecture: CLIPS statistics at the tower's image size."""
    return {"size": int(arch["vision_cfg"]["image_size"]), **CLIPS_PREPROCESS}


def image_transform(arch: dict):
    """The deterministic open_clip transform used for training and evaluation (PIL RGB -> tensor)."""
    p = preprocess_cfg(arch)
    return open_clip.image_transform(p["size"], is_train=False, mean=p["mean"], std=p["std"],
                                     resize_mode=p["resize_mode"], interpolation=p["interpolation"])


def export_open_clip(clip_model, arch: dict, out_dir: str | Path, tokenizer=None) -> Path:
    """Write `out_dir` atomically (temp dir + rename); returns its path."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        state = {k: v.detach().cpu().contiguous() for k, v in clip_model.state_dict().items()}
        save_file(state, str(tmp / "open_clip_model.safetensors"))
        config = {"model_cfg": open_clip_cfg(arch), "preprocess_cfg": preprocess_cfg(arch)}
        (tmp / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
        hf = getattr(tokenizer, "hf_tokenizer", None)
        if hf is not None:
            hf.save_pretrained(str(tmp))
    return out_dir


def load_open_clip(model: str, device: str = "cpu"):
    """(model, preprocess, tokenizer) from an export dir, a run dir (its `export/`) or an open_clip name."""
    p = Path(model)
    if p.is_dir():
        if not (p / "open_clip_config.json").is_file() and (p / "export" / "open_clip_config.json").is_file():
            p = p / "export"
        if not (p / "open_clip_config.json").is_file():
            raise FileNotFoundError(f"{model}: no open_clip_config.json (expected an open_clip export dir)")
        from clips_tower.inputs import check_safetensors, read_json_object

        read_json_object(p / "open_clip_config.json", "open_clip config")
        if (p / "open_clip_model.safetensors").exists():
            check_safetensors(p / "open_clip_model.safetensors")  # truncated / corrupt: named here
        model = f"local-dir:{p}"
    clip, preprocess = open_clip.create_model_from_pretrained(model, device=device)
    return clip.eval(), preprocess, open_clip.get_tokenizer(model)
