"""Benchmark: samples/s of our CLIPS training step vs open_clip's own CoCa at equal widths and batch.

    HF_HUB_OFFLINE=1 python scripts/bench_clips_step.py --data runs/world-demo --config configs/clips/clips.yaml
    HF_HUB_OFFLINE=1 python scripts/bench_clips_step.py --data runs/world-tiny --config configs/clips/tiny.yaml --steps 3

Both models get the same vision tower config, the same text-tower width/depth, a decoder of the
captioner's width/depth/heads, the same real batch (images + captions of the world's shards),
AdamW, fwd + bwd + step. CoCa (open_clip `CoCa` + `CoCaLoss`) encodes the full synthetic caption
at the text context and decodes it autoregressively with cross-attention to the image tokens;
CLIPS encodes the web caption and a K-token partial synthetic caption, and its captioner predicts
the full caption from [image; web caption; queries]. The CLIPS side is the production step
(`clips_tower.train_step.build` + `train_step`: its optimizer, schedule, clipping and precision);
CoCa gets plain AdamW fwd + bwd + step. Steps alternate between the two models so
that machine noise (shared CPUs) hits both alike; the median step time is reported.
"""
from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import open_clip
import torch
from open_clip.loss import CoCaLoss

from clips_tower.config import ClipsRunConfig, load_run_config
from clips_tower.data import CaptionReader, list_shards
from clips_tower.model import open_clip_cfg
from clips_tower.train_step import TrainSetup, build, train_step

WARMUP = 2  # untimed steps per model


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="example:\n  "
                                "python scripts/bench_clips_step.py --data runs/world-demo --config configs/clips/clips.yaml",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--config", default="configs/clips/clips.yaml")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, default=6, help="timed steps per model (after 2 warm-up steps)")
    p.add_argument("--caption-positions", type=int, help="override method.caption_positions (0 = all)")
    return p.parse_args(argv)


def coca_texts(cfg: ClipsRunConfig, data: str, context_length: int, n: int, device) -> list[torch.Tensor]:
    """n batches of full synthetic captions (open_clip tokenizer at the text context) for CoCa."""
    import webdataset as wds

    bs, reader = cfg.optim.batch_size, CaptionReader(cfg.data)
    raw = wds.DataPipeline(wds.SimpleShardList(list_shards(data)), wds.tarfile_to_samples())
    texts = [reader.captions(s)[1] for _, s in zip(range(bs * n), raw)]
    tok = open_clip.tokenizer.SimpleTokenizer(context_length=context_length)
    return [tok(texts[i * bs : (i + 1) * bs]).to(device) for i in range(n)]


class CocaStep:
    """open_clip's CoCa + CoCaLoss with plain AdamW, stepped on our batches' images."""

    def __init__(self, setup: TrainSetup, device):
        m = setup.cfg.method
        self.model = coca_for(setup.arch).to(device)
        self.loss = CoCaLoss(caption_loss_weight=m.caption_weight, clip_loss_weight=m.contrastive_weight)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.use_bf16 = setup.use_bf16

    def __call__(self, images: torch.Tensor, text: torch.Tensor) -> None:
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.use_bf16):
            out = self.model(images, text)
            clip_l, cap_l = self.loss(out["image_features"], out["text_features"], out["logits"], out["labels"],
                                      out["logit_scale"])
        self.opt.zero_grad(set_to_none=True)
        (clip_l + cap_l).backward()
        self.opt.step()


def timed(fn, device) -> float:
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    over = {"optim.batch_size": args.batch_size} if args.batch_size else {}
    if args.caption_positions is not None:
        over["method.caption_positions"] = args.caption_positions
    cfg = load_run_config(args.config, over)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n, bs = args.steps + WARMUP, cfg.optim.batch_size

    ours = build(cfg, args.data, device=device)
    batches = [b.to(device) for _, b in zip(range(n), ours.stream())]
    # CoCa sees the same images with their full synthetic captions at the text context length
    texts = coca_texts(cfg, args.data, ours.tokenizer.context_length, n, device)
    coca = CocaStep(ours, device)
    times = {"clips": [], "coca": []}
    for i in range(n):  # alternating, so machine noise hits both alike
        dts = {"clips": timed(partial(train_step, ours, batches[i]), device),
               "coca": timed(partial(coca, batches[i].images, texts[i]), device)}
        for name, dt in dts.items():
            if i >= WARMUP:
                times[name].append(dt)
    sps = {k: bs / statistics.median(v) for k, v in times.items()}
    n_ours = sum(p.numel() for p in ours.model.parameters()) / 1e6
    n_coca = sum(p.numel() for p in coca.model.parameters()) / 1e6
    print(f"device {device}, batch {bs}, arch {cfg.model}, method {cfg.method.strategy} K={cfg.method.k} "
          f"caption_positions={cfg.method.caption_positions or 'all'}")
    print(f"CLIPS step: {sps['clips']:.1f} samples/s ({n_ours:.2f}M params)")
    print(f"CoCa  step: {sps['coca']:.1f} samples/s ({n_coca:.2f}M params)")
    print(f"ratio CLIPS/CoCa: {sps['clips'] / sps['coca']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
