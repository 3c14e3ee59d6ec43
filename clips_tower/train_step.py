"""The CLIPS pretraining step: `build` sets up model, data, optimizer and schedule; `train_step` runs one step.

    setup = build(cfg, "runs/world", rank, world, device)   # InputError on bad data / architecture
    stream = setup.stream(rank, world)                       # or with a checkpoint's data state
    for batch in stream:
        terms = train_step(setup, batch.to(device))          # {"loss", "web", "syn", "caption", ...}

AdamW (no weight decay on gains/biases/embeddings/temperature), cosine schedule with linear warmup,
gradient clipping, bf16 autocast on GPU (or `run.precision: bf16`), optional gradient checkpointing,
DDP when `world > 1`. `clips_tower.train` wraps this in the resumable, logged loop; the step
benchmark (`scripts/bench_clips_step.py`) times this same `train_step`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn.parallel import DistributedDataParallel

from clips_tower.config import ClipsRunConfig
from clips_tower.data import Batch, ShardStream, check_caption_fields, list_shards
from clips_tower.export import image_transform
from clips_tower.inputs import InputError
from clips_tower.losses import ClipsLoss
from clips_tower.model import CLIPSModel, load_arch
from clips_tower.tokenizer import TextTokenizer, build_tokenizer


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip_train's rule: no decay on 1-D params (gains, biases), embeddings, the temperature."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = p.ndim < 2 or "embedding" in name or "logit_scale" in name or name.endswith(("queries", "text_pos"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def cosine_with_warmup(warmup: int, total: int):
    """LambdaLR factor: (step + 1) / warmup, then a half cosine to 0 at `total` (open_clip_train's `cosine_lr`)."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return factor


@dataclass
class TrainSetup:
    """What `train_step` needs, built once: `model` is the CLIPS model, `ddp` the module stepped (DDP or it)."""

    cfg: ClipsRunConfig
    arch: dict
    tokenizer: TextTokenizer
    shards: list[str]
    model: CLIPSModel
    ddp: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loss_fn: ClipsLoss
    use_bf16: bool

    def stream(self, rank: int = 0, world: int = 1, state: dict | None = None) -> ShardStream:
        """This rank's batches; `state` (a checkpoint's `ShardStream.state()`) resumes where it stopped."""
        state = state or {"consumed": 0, "skipped": {}, "skipped_keys": []}
        cap = self.arch.get("captioner_cfg", {})
        stream = ShardStream(self.shards, self.tokenizer, image_transform(self.arch), self.cfg,
                             num_queries=cap.get("num_queries", 0), prefix_len=cap.get("prefix_len", 0),
                             rank=rank, world_size=world, start=state["consumed"])
        stream.skipped.update(state["skipped"])
        stream.skipped_keys = list(state["skipped_keys"])
        return stream


def build(cfg: ClipsRunConfig, data: str, rank: int = 0, world: int = 1,
          device: torch.device | None = None) -> TrainSetup:
    """Model (seeded by run.seed: identical on every rank), optimizer and schedule for `data`'s shards;
    `device` defaults to the CPU."""
    device = device or torch.device("cpu")
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
    loss_fn = ClipsLoss(rank, world, cfg.method.contrastive_weight, cfg.method.caption_weight)
    use_bf16 = device.type == "cuda" and cfg.run.precision in ("auto", "bf16") or cfg.run.precision == "bf16"
    return TrainSetup(cfg, arch, tok, shards, model, ddp, optimizer, scheduler, loss_fn, use_bf16)


def train_step(s: TrainSetup, b: Batch) -> dict[str, torch.Tensor]:
    """One optimizer step on batch `b` (already on the device): forward, losses, backward, clip, step,
    schedule, temperature clamp. Returns this rank's loss terms."""
    with torch.autocast(device_type=b.images.device.type, dtype=torch.bfloat16, enabled=s.use_bf16):
        outputs = s.ddp(b.images, web_ids=b.web_ids, syn_ids=b.syn_ids, cap_web_ids=b.cap_web_ids,
                        cap_web_valid=b.cap_web_valid, target_valid=b.target_valid)
        terms = s.loss_fn(outputs, b.targets)
    s.optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    if s.cfg.optim.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(s.model.parameters(), s.cfg.optim.grad_clip)
    s.optimizer.step()
    s.scheduler.step()
    with torch.no_grad():
        s.model.clip.logit_scale.clamp_(0, math.log(100))
    return terms
