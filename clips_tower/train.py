"""CLIPS tower pretraining loop (1 or N processes): `clips-llava clips train` and `torchrun -m clips_tower.train`.

    clips-llava clips train --config configs/clips/tiny.yaml --data runs/world/pretrain --out runs/clips-tiny
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m clips_tower.train \\
        --config configs/clips/tiny.yaml --data runs/world --out runs/clips-tiny-2p --steps 20

One compact loop: AdamW (no weight decay on gains/biases/embeddings/temperature), cosine schedule
with linear warmup, gradient clipping, bf16 autocast on GPU, optional gradient checkpointing,
DDP over gloo (CPU) or NCCL (GPU) with the contrastive loss on the global batch. Rank 0 shows a
progress bar, writes TensorBoard logs (`OUT/tb`) and `OUT/metrics.jsonl`, saves atomic checkpoints
(`OUT/checkpoints/step-N`) and finally exports the tower as an open_clip dir (`OUT/export`).
`--resume` restarts from the latest checkpoint with the same data and the same loss curve.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import yaml
from torch.nn.parallel import DistributedDataParallel

from clips_tower.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from clips_tower.config import ClipsRunConfig, load_run_config
from clips_tower.data import ShardStream, check_caption_fields, list_shards
from clips_tower.export import export_open_clip, image_transform
from clips_tower.inputs import debug_enabled
from clips_tower.losses import ClipsLoss
from clips_tower.model import CLIPSModel, load_arch
from clips_tower.tokenizer import TokenizerUnavailableError, build_tokenizer

EXAMPLE = "example:\n  clips-llava clips train --config configs/clips/tiny.yaml --data runs/world --out runs/clips-tiny --steps 20"


class InputError(Exception):
    """Bad user input found before training: reported as one line, exit code 2."""


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


def init_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip_train's rule: no decay on 1-D params (gains, biases), embeddings, the temperature."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "embedding" in name or "logit_scale" in name or name.endswith(("queries", "text_pos"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_with_warmup(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


def _gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None}


def train(cfg: ClipsRunConfig, data: str, out: Path, rank: int, world: int, device: torch.device,
          resume: bool = False, stop_at: int | None = None) -> int:
    try:
        arch = load_arch(cfg.model)
    except ValueError as e:  # a malformed architecture JSON (the message names it)
        raise InputError(str(e)) from None
    tok = build_tokenizer(arch["text_cfg"])
    try:
        shards = list_shards(data)
        check_caption_fields(shards, cfg)
    except ValueError as e:
        raise InputError(str(e)) from None
    if world > len(shards) and rank == 0:
        print(f"note: {len(shards)} shard(s) for {world} processes: ranks resample all shards with their own seeds")

    torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
    model = CLIPSModel(arch, use_captioner=cfg.method.captioner).to(device)
    if cfg.run.grad_checkpointing:
        model.set_grad_checkpointing(True)
    ddp = model
    if world > 1:
        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                      find_unused_parameters=not cfg.method.views)
    o = cfg.optim
    optimizer = torch.optim.AdamW(param_groups(model, o.weight_decay), lr=o.lr, betas=o.betas, eps=o.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(o.warmup_steps, o.steps))

    start_step, data_state = 0, {"consumed": 0, "skipped": {}, "skipped_keys": []}
    ckpt = latest_checkpoint(out / "checkpoints") if resume else None
    if ckpt is not None:
        state, rngs = load_checkpoint(ckpt, model, optimizer, scheduler)
        if len(state["data"]) != world:
            raise InputError(f"{ckpt} was written by {len(state['data'])} process(es); resume with the same number")
        start_step, data_state = state["step"], state["data"][rank]
        torch.set_rng_state(rngs[rank]["torch"])
        random.setstate(rngs[rank]["python"])
        if rngs[rank]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state(rngs[rank]["cuda"])
    elif resume and rank == 0:
        print(f"--resume: no checkpoint in {out / 'checkpoints'}, starting from step 0")

    cap = arch.get("captioner_cfg", {})
    stream = ShardStream(shards, tok, image_transform(arch), cfg, num_queries=cap.get("num_queries", 0),
                         prefix_len=cap.get("prefix_len", 0), rank=rank, world_size=world, start=data_state["consumed"])
    stream.skipped.update(data_state["skipped"])
    stream.skipped_keys = list(data_state["skipped_keys"])
    loss_fn = ClipsLoss(rank, world, cfg.method.contrastive_weight, cfg.method.caption_weight)
    use_bf16 = device.type == "cuda" and cfg.run.precision in ("auto", "bf16") or cfg.run.precision == "bf16"

    writer = metrics = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        out.mkdir(parents=True, exist_ok=True)
        (out / "run_config.json").write_text(json.dumps(cfg.to_dict(), indent=1) + "\n")
        writer = SummaryWriter(str(out / "tb"), purge_step=start_step + 1 if start_step else None)
        kept = []
        if start_step and (out / "metrics.jsonl").is_file():  # drop steps after the checkpoint
            kept = [ln for ln in (out / "metrics.jsonl").read_text().splitlines() if json.loads(ln)["step"] <= start_step]
        (out / "metrics.jsonl").write_text("".join(ln + "\n" for ln in kept))
        metrics = open(out / "metrics.jsonl", "a")
        n_params = sum(p.numel() for p in model.parameters())
        print(f"CLIPS pretraining: {n_params / 1e6:.2f}M params, {world} process(es), global batch "
              f"{o.batch_size * world}, steps {start_step}->{o.steps}, device {device}, bf16={use_bf16}")

    from tqdm import tqdm

    end = o.steps if stop_at is None else min(o.steps, stop_at)
    batches = iter(stream)
    ddp.train()
    for step in tqdm(range(start_step, end), disable=rank != 0, desc="clips", initial=start_step, total=o.steps):
        t0 = time.perf_counter()
        b = next(batches).to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            outputs = ddp(b.images, web_ids=b.web_ids, syn_ids=b.syn_ids, cap_web_ids=b.cap_web_ids,
                          cap_web_valid=b.cap_web_valid, target_valid=b.target_valid)
            terms = loss_fn(outputs, b.targets)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if o.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.clip.logit_scale.clamp_(0, math.log(100))
        # loss terms averaged over ranks = the global-batch values
        names = sorted(terms)
        vec = torch.stack([terms[n].detach().float() for n in names])
        if world > 1:
            dist.all_reduce(vec)
            vec /= world
        if rank == 0:
            dt = time.perf_counter() - t0
            row = {"step": step + 1, **{n: float(v) for n, v in zip(names, vec)},
                   "lr": scheduler.get_last_lr()[0], "temperature": float(1.0 / model.clip.logit_scale.detach().exp()),
                   "samples_per_s": o.batch_size * world / dt}
            metrics.write(json.dumps(row) + "\n")
            metrics.flush()
            if (step + 1) % cfg.run.log_every == 0 or step + 1 == end:
                for k, v in row.items():
                    if k != "step":
                        writer.add_scalar(f"train/{k}", v, step + 1)
        if (step + 1) % cfg.run.checkpoint_every == 0 or step + 1 == end:
            data_states = _gather({"consumed": stream.consumed, "skipped": dict(stream.skipped),
                                   "skipped_keys": stream.skipped_keys}, world)
            rngs = _gather(_rng_state(), world)
            if rank == 0:
                save_checkpoint(out / "checkpoints", step + 1, model, optimizer, scheduler,
                                {"data": data_states}, rngs, keep=cfg.run.keep_checkpoints)
            if world > 1:
                dist.barrier()

    stats = _gather({"skipped": dict(stream.skipped), "keys": stream.skipped_keys}, world)
    if rank == 0:
        metrics.close()
        writer.close()
        total = sum(sum(s["skipped"].values()) for s in stats)
        if total:
            reasons: dict[str, int] = {}
            for s in stats:
                for r, n in s["skipped"].items():
                    reasons[r] = reasons.get(r, 0) + n
            keys = [k for s in stats for k in s["keys"]]
            (out / "skipped.json").write_text(json.dumps({"reasons": reasons, "keys": keys}, indent=1) + "\n")
            print(f"skipped {total} bad sample(s): {reasons}; keys: {', '.join(keys[:10])}"
                  f"{' ...' if len(keys) > 10 else ''} (all in {out / 'skipped.json'})")
        if end == o.steps:
            path = export_open_clip(model.clip, arch, out / "export", tok)
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
