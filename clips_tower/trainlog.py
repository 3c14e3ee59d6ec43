"""Rank 0's record of a CLIPS pretraining run: `OUT/run_config.json`, `OUT/metrics.jsonl`, `OUT/tb`, `OUT/skipped.json`.

    log = RunLog(out, cfg, start_step)          # on resume, drops metrics rows after the checkpoint
    log.write(step, terms, lr=..., temperature=..., samples_per_s=..., tensorboard=True)
    log.close()
    report_skips(out, per_rank_stats)           # skipped.json + one line, when any sample was skipped
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from clips_tower.config import ClipsRunConfig


class RunLog:
    """One metrics.jsonl row per step (flushed), TensorBoard scalars `train/*` when asked."""

    def __init__(self, out: Path, cfg: ClipsRunConfig, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        out.mkdir(parents=True, exist_ok=True)
        (out / "run_config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
        self.writer = SummaryWriter(str(out / "tb"), purge_step=start_step + 1 if start_step else None)
        path = out / "metrics.jsonl"
        kept = []
        if start_step and path.is_file():  # drop steps after the checkpoint
            kept = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= start_step]
        path.write_text("".join(ln + "\n" for ln in kept))
        self.metrics = open(path, "a")  # noqa: SIM115 -- appended to at every step, closed by close()

    def write(self, step: int, terms: dict[str, torch.Tensor], *, lr: float, temperature: float,
              samples_per_s: float, tensorboard: bool) -> dict:
        row = {"step": step, **{n: float(v) for n, v in terms.items()},
               "lr": lr, "temperature": temperature, "samples_per_s": samples_per_s}
        self.metrics.write(json.dumps(row) + "\n")
        self.metrics.flush()
        if tensorboard:
            for k, v in row.items():
                if k != "step":
                    self.writer.add_scalar(f"train/{k}", v, step)
        return row

    def close(self) -> None:
        self.metrics.close()
        self.writer.close()


def report_skips(out: Path, stats: list[dict]) -> None:
    """Sum every rank's {"skipped": {reason: n}, "keys": [...]}; write skipped.json and say so, if any."""
    total = sum(sum(s["skipped"].values()) for s in stats)
    if not total:
        return
    reasons: dict[str, int] = {}
    for s in stats:
        for r, n in s["skipped"].items():
            reasons[r] = reasons.get(r, 0) + n
    keys = [k for s in stats for k in s["keys"]]
    (out / "skipped.json").write_text(json.dumps({"reasons": reasons, "keys": keys}, indent=1) + "\n")
    print(f"skipped {total} bad sample(s): {reasons}; keys: {', '.join(keys[:10])}"
          f"{' ...' if len(keys) > 10 else ''} (all in {out / 'skipped.json'})")
