"""Benchmark: samples/s of our CLIPS training step vs open_clip's own CoCa at equal widths and batch.

    HF_HUB_OFFLINE=1 python scripts/bench_clips_step.py --data runs/world-demo --config configs/clips/clips.yaml
    HF_HUB_OFFLINE=1 python scripts/bench_clips_step.py --data runs/world-tiny --config configs/clips/tiny.yaml --steps 3

Both models get the same vision tower config, the same text-tower width/depth, a decoder of the
captioner's width/depth/heads, the same real batch (images + captions of the world's shards),
AdamW, fwd + bwd + step. CoCa (open_clip `CoCa` + `CoCaLoss`) encodes the full synthetic caption
at the text context and decodes it autoregressively with cross-attention to the image tokens;
CLIPS encodes the web caption and a K-token partial synthetic caption, and its captioner predicts
the full caption from [image; web caption; queries]. Steps alternate between the two models so
that machine noise (shared CPUs) hits both alike; the median step time is reported.
"""
from __future__ import annotations

import argparse
import statistics
import time

import open_clip
import torch
from open_clip.loss import CoCaLoss

from clips_tower.config import load_run_config
from clips_tower.data import ShardStream, _captions, list_shards
from clips_tower.export import image_transform
from clips_tower.losses import ClipsLoss
from clips_tower.model import CLIPSModel, load_arch, open_clip_cfg
from clips_tower.tokenizer import build_tokenizer


def coca_for(arch: dict) -> open_clip.CoCa:
    """open_clip CoCa with our towers' config and a decoder the captioner's size."""
    cfg = open_clip_cfg(arch)
    cap = arch["captioner_cfg"]
    cfg["vision_cfg"] = {**cfg["vision_cfg"], "output_tokens": True}
    cfg["text_cfg"] = {**cfg["text_cfg"], "embed_cls": True, "output_tokens": True}
    if cap["width"] != cfg["text_cfg"]["width"] or cap["width"] != cfg["vision_cfg"]["width"]:
        raise ValueError("CoCa needs text, vision and decoder widths equal (no attentional pooler here)")
    cfg["multimodal_cfg"] = {"context_length": cfg["text_cfg"]["context_length"], "vocab_size": cfg["text_cfg"]["vocab_size"],
                             "width": cap["width"], "heads": cap["heads"], "layers": cap["layers"]}
    return open_clip.CoCa(**cfg)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="example:\n  "
                                "python scripts/bench_clips_step.py --data runs/world-demo --config configs/clips/clips.yaml",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--config", default="configs/clips/clips.yaml")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, default=6, help="timed steps per model (after 2 warm-up steps)")
    p.add_argument("--caption-positions", type=int, help="override method.caption_positions (0 = all)")
    args = p.parse_args(argv)
    over = {"optim.batch_size": args.batch_size} if args.batch_size else {}
    if args.caption_positions is not None:
        over["method.caption_positions"] = args.caption_positions
    cfg = load_run_config(args.config, over)
    arch = load_arch(cfg.model)
    tok = build_tokenizer(arch["text_cfg"])
    bs = cfg.optim.batch_size
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    use_bf16 = device.type == "cuda"
    torch.manual_seed(0)

    cap = arch["captioner_cfg"]
    stream = ShardStream(list_shards(args.data), tok, image_transform(arch), cfg, cap["num_queries"], cap["prefix_len"])
    ours_batches = [b.to(device) for _, b in zip(range(args.steps + 2), stream)]
    # CoCa sees the same images with their full synthetic captions at the text context length
    import webdataset as wds

    raw = wds.DataPipeline(wds.SimpleShardList(list_shards(args.data)), wds.tarfile_to_samples())
    texts = [_captions(s)[1] for _, s in zip(range(bs * (args.steps + 2)), raw)]
    coca_tok = open_clip.tokenizer.SimpleTokenizer(context_length=tok.context_length)
    coca_text = [coca_tok(texts[i * bs : (i + 1) * bs]).to(device) for i in range(args.steps + 2)]

    ours = CLIPSModel(arch, use_captioner=cfg.method.captioner).to(device)
    coca = coca_for(arch).to(device)
    ours_loss = ClipsLoss(contrastive_weight=cfg.method.contrastive_weight, caption_weight=cfg.method.caption_weight)
    coca_loss = CoCaLoss(caption_loss_weight=cfg.method.caption_weight, clip_loss_weight=cfg.method.contrastive_weight)
    opt_ours = torch.optim.AdamW(ours.parameters(), lr=1e-4)
    opt_coca = torch.optim.AdamW(coca.parameters(), lr=1e-4)

    def step_ours(i: int) -> float:
        b = ours_batches[i]
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = ours(b.images, b.web_ids, b.syn_ids, b.cap_web_ids, b.cap_web_valid, b.target_valid)
            loss = ours_loss(out, b.targets)["loss"]
        opt_ours.zero_grad(set_to_none=True)
        loss.backward()
        opt_ours.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    def step_coca(i: int) -> float:
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = coca(ours_batches[i].images, coca_text[i])
            clip_l, cap_l = coca_loss(out["image_features"], out["text_features"], out["logits"], out["labels"],
                                      out["logit_scale"])
        opt_coca.zero_grad(set_to_none=True)
        (clip_l + cap_l).backward()
        opt_coca.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times = {"clips": [], "coca": []}
    for i in range(args.steps + 2):
        for name, fn in (("clips", step_ours), ("coca", step_coca)):
            dt = fn(i)
            if i >= 2:
                times[name].append(dt)
    sps = {k: bs / statistics.median(v) for k, v in times.items()}
    n_ours = sum(p.numel() for p in ours.parameters()) / 1e6
    n_coca = sum(p.numel() for p in coca.parameters()) / 1e6
    print(f"device {device}, batch {bs}, arch {cfg.model}, method {cfg.method.strategy} K={cfg.method.k} "
          f"caption_positions={cfg.method.caption_positions or 'all'}")
    print(f"CLIPS step: {sps['clips']:.1f} samples/s ({n_ours:.2f}M params)")
    print(f"CoCa  step: {sps['coca']:.1f} samples/s ({n_coca:.2f}M params)")
    print(f"ratio CLIPS/CoCa: {sps['clips'] / sps['coca']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
