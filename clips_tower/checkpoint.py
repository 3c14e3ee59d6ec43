"""Atomic training checkpoints for CLIPS pretraining (model safetensors + optimizer/rng + run state).

    save_checkpoint(out / "checkpoints", step, model, optimizer, scheduler, state, keep=2)
    path = latest_checkpoint(out / "checkpoints")          # None when there is none
    state = load_checkpoint(path, model, optimizer, scheduler)

A checkpoint is a directory `step-00000010/` holding `model.safetensors` (the whole CLIPS model:
open_clip towers + captioner), `trainer.pt` (optimizer, scheduler, per-rank RNG states; read
back with `torch.load(weights_only=True)`) and `state.json` (step, per-rank data positions and
skip counts). It is written under a temporary name and renamed, so a crash mid-write leaves the
previous checkpoint as the latest one.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from clips_tower.io import atomic_dir

PREFIX = "step-"


def _step_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.glob(f"{PREFIX}*") if p.is_dir() and p.name[len(PREFIX):].isdigit()),
                  key=lambda p: int(p.name[len(PREFIX):]))


def latest_checkpoint(root: str | Path) -> Path | None:
    dirs = _step_dirs(Path(root)) if Path(root).is_dir() else []
    return dirs[-1] if dirs else None


def save_checkpoint(root: str | Path, step: int, model: torch.nn.Module, optimizer, scheduler,
                    state: dict, rng_states: list, keep: int = 2) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:08d}"
    with atomic_dir(final) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_states},
                   tmp / "trainer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=1) + "\n")
    for old in _step_dirs(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer, scheduler) -> tuple[dict, list]:
    """Restore model/optimizer/scheduler in place; returns (state.json dict, per-rank RNG states)."""
    path = Path(path)
    model.load_state_dict(load_file(str(path / "model.safetensors")), strict=True)
    trainer = torch.load(path / "trainer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(trainer["optimizer"])
    scheduler.load_state_dict(trainer["scheduler"])
    return json.loads((path / "state.json").read_text()), trainer["rng"]
