"""CLIPS tower pretraining loop (1 or N processes): `clips-llava clips train` and `torchrun -m clips_tower.train`.

    clips-llava clips train --config configs/clips/tiny.yaml --data runs/world/pretrain --out runs/clips-tiny
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m clips_tower.train \\
        --config configs/clips/tiny.yaml --data runs/world --out runs/clips-tiny-2p --steps 20

One compact loop around `clips_tower.train_step` (model, optimizer, schedule and the step itself:
AdamW, cosine schedule with linear warmup, gradient clipping, bf16 autocast on GPU, DDP over gloo
(CPU) or NCCL (GPU) with the contrastive loss on the global batch). Rank 0 shows a progress bar,
writes TensorBoard logs (`OUT/tb`) and `OUT/metrics.jsonl` (`clips_tower.trainlog`); every rank
takes part in the atomic checkpoints (`OUT/checkpoints/step-N`, `clips_tower.checkpoint`); at the
end rank 0 exports the tower as an open_clip dir (`OUT/export`). `--resume` restarts from the
latest checkpoint with the same data and the same loss curve.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from clips_tower.checkpoint import RunCheckpoints
from clips_tower.config import ClipsRunConfig, load_run_config
from clips_tower.distributed import gather, init_distributed, mean_over_ranks
from clips_tower.export import export_open_clip
from clips_tower.inputs import InputError, debug_enabled
from clips_tower.tokenizer import TokenizerUnavailableError
from clips_tower.train_step import build, train_step
from clips_tower.trainlog import RunLog, report_skips

EXAMPLE = "example:\n  clips-llava clips train --config configs/clips/tiny.yaml --data runs/world --out runs/clips-tiny --steps 20"

def build_parser(prog: str = "clips-llava clips train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Pretrain a CLIPS tower on webdataset shards.",
                                epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="run YAML (configs/clips/*.yaml)")
    p.add_argument("--data", required=True, help="world dir, shard dir, one .tar or a brace pattern")
    p.add_argument("--out", required=True, help="run directory (checkpoints, logs, export)")
    p.add_argument("--steps", type=int, help="total optimizer steps (overrides optim.steps); 0 exports the "
                   "initialised tower untrained (the random-tower control)")
    p.add_argument("--batch-size", type=int, help="per-process batch size (overrides optim.batch_size)")
    p.add_argument("--seed", type=int, help="overrides run.seed")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any run-config field, value parsed as YAML (e.g. --set method.strategy=block "
                        "--set method.k=64); repeatable")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in OUT")
    p.add_argument("--stop-at", type=int, help="stop after this step (checkpointed), as if interrupted")
    return p


def train(cfg: ClipsRunConfig, data: str, out: Path, rank: int, world: int, device: torch.device,
          resume: bool = False, stop_at: int | None = None) -> int:
    s = build(cfg, data, rank, world, device)
    checkpoints = RunCheckpoints(out / "checkpoints", rank, world, keep=cfg.run.keep_checkpoints)
    start_step, data_state = checkpoints.restore(s.model, s.optimizer, s.scheduler) if resume else (0, None)
    stream = s.stream(rank, world, data_state)
    o = cfg.optim
    log = None
    if rank == 0:
        log = RunLog(out, cfg, start_step)
        n_params = sum(p.numel() for p in s.model.parameters())
        print(f"CLIPS pretraining: {n_params / 1e6:.2f}M params, {world} process(es), global batch "
              f"{o.batch_size * world}, steps {start_step}->{o.steps}, device {device}, bf16={s.use_bf16}")

    from tqdm import tqdm

    end = o.steps if stop_at is None else min(o.steps, stop_at)
    batches = iter(stream)
    s.ddp.train()
    for step in tqdm(range(start_step + 1, end + 1), disable=rank != 0, desc="clips", initial=start_step, total=o.steps):
        t0 = time.perf_counter()
        terms = mean_over_ranks(train_step(s, next(batches).to(device)), world)  # the global-batch values
        if log is not None:
            dt = time.perf_counter() - t0
            log.write(step, terms, lr=s.scheduler.get_last_lr()[0],
                      temperature=float(1.0 / s.model.clip.logit_scale.detach().exp()),
                      samples_per_s=o.batch_size * world / dt, tensorboard=step % cfg.run.log_every == 0 or step == end)
        if step % cfg.run.checkpoint_every == 0 or step == end:
            checkpoints.save(step, s.model, s.optimizer, s.scheduler, stream.state())

    stats = gather({"skipped": dict(stream.skipped), "keys": stream.skipped_keys}, world)
    if log is not None:
        log.close()
        report_skips(out, stats)
        if end == o.steps:
            path = export_open_clip(s.model.clip, s.arch, out / "export", s.tokenizer)
            print(f"exported open_clip tower to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in {"optim.steps": args.steps, "optim.batch_size": args.batch_size,
                                   "run.seed": args.seed}.items() if v is not None}
    prog = "clips-llava clips train"
    try:
        for spec in args.set:
            key, sep, value = spec.partition("=")
            if not sep or "." not in key:
                raise ValueError(f"--set {spec!r}: expected SECTION.KEY=VALUE (e.g. method.k=64)")
            overrides[key.strip()] = yaml.safe_load(value)
        cfg = load_run_config(args.config, overrides)
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise InputError(f"--out {args.out}: is a file, not a directory")
    except (FileNotFoundError, ValueError, InputError) as e:
        if debug_enabled():
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    rank, world, device = init_distributed()
    try:
        return train(cfg, args.data, Path(args.out), rank, world, device, resume=args.resume, stop_at=args.stop_at)
    except (InputError, FileNotFoundError, TokenizerUnavailableError) as e:
        if debug_enabled():
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
