"""Projector weights in and out: our `mm_projector.safetensors` and LLaVA-1.5's `mm_projector.bin`.

    clips-llava llava projector export --model runs/stage1 --out runs/mm_projector.bin  # LLaVA-1.5 format
    clips-llava llava projector import --model mm_projector.bin --out runs/mm_projector.safetensors

Canonical keys are HF Llava's (`multi_modal_projector.linear_1.weight`, ...). LLaVA-1.5 stores the
same `mlp2x_gelu` as `model.mm_projector.{0,2}.{weight,bias}` in a torch pickle, read here with
`torch.load(weights_only=True)` only. A source may be a stage-1 output dir (its
`mm_projector.safetensors`, else the projector inside its model safetensors), a `.safetensors`
file, or a LLaVA `.bin`.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from clips_tower.io import atomic_path

PREFIX = "multi_modal_projector."
PROJECTOR_FILE = "mm_projector.safetensors"
# HF Llava projector key -> LLaVA-1.5 mm_projector.bin key (mlp2x_gelu: Linear, GELU, Linear).
LLAVA15_KEYS = {
    "linear_1.weight": "model.mm_projector.0.weight", "linear_1.bias": "model.mm_projector.0.bias",
    "linear_2.weight": "model.mm_projector.2.weight", "linear_2.bias": "model.mm_projector.2.bias",
}


def _from_safetensors(files: list[Path]) -> dict[str, torch.Tensor]:
    from clips_tower.inputs import check_safetensors

    state = {}
    for f in files:
        check_safetensors(f)  # truncated / corrupt: one line naming the file
        with safe_open(str(f), framework="pt") as fh:
            for k in fh.keys():
                i = k.find(PREFIX)
                if i >= 0:
                    state[k[i + len(PREFIX):]] = fh.get_tensor(k)
    return state


def _from_llava_bin(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ValueError(f"{path}: projector file not found" if not path.exists() else f"{path}: not a file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a pickle, a pickle with code in it (weights_only refuses)
        why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
        raise ValueError(f"{path}: not a readable torch weights file ({why})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: not an mlp2x_gelu mm_projector.bin (holds a {type(raw).__name__}, not a state dict)")
    back = {v: k for k, v in LLAVA15_KEYS.items()}
    # LLaVA saves with or without the "model." prefix depending on version; accept both.
    state = {back.get(k, back.get("model." + k)): v for k, v in raw.items()}
    if None in state or set(state) != set(LLAVA15_KEYS):
        raise ValueError(f"{path}: not an mlp2x_gelu mm_projector.bin (keys {sorted(raw)})")
    return state


def read_projector(src: str | Path) -> dict[str, torch.Tensor]:
    """Projector state dict with keys `linear_1.weight`, ... from a dir, .safetensors or LLaVA .bin."""
    src = Path(src)
    if src.is_dir():
        if (src / PROJECTOR_FILE).is_file():
            return read_projector(src / PROJECTOR_FILE)
        if (src / "mm_projector.bin").is_file():
            return read_projector(src / "mm_projector.bin")
        files = sorted(src.glob("*.safetensors"))
        state = _from_safetensors(files)
    elif src.suffix == ".safetensors":
        state = _from_safetensors([src])
    elif src.suffix == ".bin":
        state = _from_llava_bin(src)
    else:
        raise ValueError(f"{src}: expected a stage-1 dir, a .safetensors file or an mm_projector.bin")
    if not state:
        raise ValueError(f"{src}: no projector weights ({PREFIX}*) found")
    return state


def write_projector(state: dict[str, torch.Tensor], out: str | Path) -> Path:
    """Write `state` (keys `linear_1.weight`, ...) as .safetensors (HF keys) or .bin (LLaVA-1.5 keys)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        if out.suffix == ".bin":
            torch.save({LLAVA15_KEYS[k]: v.contiguous() for k, v in state.items()}, tmp)
        else:
            save_file({PREFIX + k: v.contiguous() for k, v in state.items()}, str(tmp), metadata={"format": "pt"})
    return out


def load_projector(model, src: str | Path) -> None:
    """Copy projector weights from `src` into an (unsharded) Llava model; shapes must match."""
    state = read_projector(src)
    missing, unexpected = model.model.multi_modal_projector.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{src}: projector keys do not match (missing {missing}, unexpected {unexpected})")


def export_from_model_dir(model_dir: str | Path) -> Path:
    """Extract the projector from a saved (complete) Llava dir into `model_dir/mm_projector.safetensors`."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({model_dir / f for f in json.loads(index.read_text())["weight_map"].values()})
    else:
        files = sorted(model_dir.glob("model*.safetensors"))
    return write_projector(_from_safetensors(files), model_dir / PROJECTOR_FILE)
