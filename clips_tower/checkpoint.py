"""Atomic training checkpoints for CLIPS pretraining (model safetensors + optimizer/rng + run state).

    save_checkpoint(out / "checkpoints", step, model, optimizer, scheduler, state, keep=2)
    path = latest_checkpoint(out / "checkpoints")          # None when there is none
    state = load_checkpoint(path, model, optimizer, scheduler)

A checkpoint is a directory `step-00000010/` holding `model.safetensors` (the whole CLIPS model:
open_clip towers + captioner), `trainer.pt` (optimizer, scheduler, per-rank RNG states; read
back with `torch.load(weights_only=True)`) and `state.json` (step, per-rank data positions and
skip counts). It is written under a temporary name and renamed, so a crash mid-write leaves the
previous checkpoint as the latest one.

`RunCheckpoints` is the training loop's view of the same files: every rank hands in its data
position and RNG state, rank 0 writes; on `--resume` each rank gets its own back.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from clips_tower.distributed import gather
from clips_tower.inputs import InputError
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


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}


def set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])


class RunCheckpoints:
    """Checkpoints of a 1- or N-process run under `root`: `save` is called by every rank (it gathers),
    `restore` returns this rank's (start step, data state) and restores its RNG."""

    def __init__(self, root: Path, rank: int, world: int, keep: int):
        self.root, self.rank, self.world, self.keep = Path(root), rank, world, keep

    def restore(self, model: torch.nn.Module, optimizer, scheduler) -> tuple[int, dict | None]:
        ckpt = latest_checkpoint(self.root)
        if ckpt is None:
            if self.rank == 0:
                print(f"--resume: no checkpoint in {self.root}, starting from step 0")
            return 0, None
        state, rngs = load_checkpoint(ckpt, model, optimizer, scheduler)
        if len(state["data"]) != self.world:
            raise InputError(f"{ckpt} was written by {len(state['data'])} process(es); resume with the same number")
        set_rng_state(rngs[self.rank])
        return state["step"], state["data"][self.rank]

    def save(self, step: int, model: torch.nn.Module, optimizer, scheduler, data_state: dict) -> None:
        data_states = gather(data_state, self.world)
        rngs = gather(rng_state(), self.world)
        if self.rank == 0:
            save_checkpoint(self.root, step, model, optimizer, scheduler, {"data": data_states}, rngs, keep=self.keep)
        if self.world > 1:
            torch.distributed.barrier()
