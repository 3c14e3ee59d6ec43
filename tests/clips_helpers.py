"""Helpers for the CLIPS pretraining tests: a fixed global batch and a 2-process (gloo) loss/grad worker."""
from __future__ import annotations

import os

import torch

ARCH = "configs/clips/models/tiny.json"
EOT = 49407


def global_batch(n: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    """A deterministic batch with model inputs, ragged web captions and ragged caption targets."""
    g = torch.Generator().manual_seed(seed)
    web = torch.randint(1, 1000, (n, 7), generator=g)
    syn = torch.randint(1, 1000, (n, 10), generator=g)
    web[:, -1] = EOT  # eot pooling (argmax) needs the eot id last
    syn[:, -1] = EOT
    cap_valid = torch.arange(7)[None, :] < torch.randint(2, 8, (n, 1), generator=g)
    target_valid = torch.arange(48)[None, :] < torch.randint(3, 49, (n, 1), generator=g)  # ragged per sample
    return {
        "images": torch.randn(n, 3, 32, 32, generator=g),
        "web_ids": web, "syn_ids": syn, "cap_web_ids": web.clone(), "cap_web_valid": cap_valid,
        "target_valid": target_valid,
        "targets": torch.randint(1, 1000, (int(target_valid.sum()),), generator=g),
    }


def loss_and_grads(batch: dict, rank: int = 0, world: int = 1, model=None):
    """Loss terms and parameter gradients of one step on this rank's share of `batch`."""
    from clips_tower.losses import ClipsLoss
    from clips_tower.model import CLIPSModel, load_arch

    torch.manual_seed(0)
    base = CLIPSModel(load_arch(ARCH), use_captioner=True)
    model = base
    n = batch["images"].shape[0] // world
    part = {k: v[rank * n : (rank + 1) * n] for k, v in batch.items() if k != "targets"}
    counts = batch["target_valid"].sum(1).tolist()
    start = sum(counts[: rank * n])
    targets = batch["targets"][start : start + sum(counts[rank * n : (rank + 1) * n])]
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(base)
    out = model(part["images"], part["web_ids"], part["syn_ids"], part["cap_web_ids"], part["cap_web_valid"],
                part["target_valid"])
    terms = ClipsLoss(rank, world)(out, targets)
    terms["loss"].backward()
    vec = torch.stack([terms[k].detach() for k in sorted(terms)])
    if world > 1:
        torch.distributed.all_reduce(vec)
        vec /= world
    grads = {k: p.grad.detach().clone() for k, p in base.named_parameters() if p.grad is not None}
    return dict(zip(sorted(terms), vec.tolist())), grads


def ddp_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        terms, grads = loss_and_grads(global_batch(), rank, world)
        if rank == 0:
            torch.save({"terms": terms, "grads": grads}, out_file)
    finally:
        torch.distributed.destroy_process_group()


def run_ddp(tmp_path, world: int = 2) -> dict:
    import torch.multiprocessing as mp

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = tmp_path / "ddp.pt"
    mp.spawn(ddp_worker, args=(world, str(tmp_path / "init"), str(out)), nprocs=world, join=True)
    return torch.load(out, weights_only=True)
