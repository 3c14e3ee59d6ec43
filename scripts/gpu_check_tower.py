"""GPU check of the tower adapter: bf16 parity on the published CLIPS shapes + tower throughput.

    python scripts/gpu_check_tower.py                          # CUDA: clips-l14-336, clips-h14-224
    python scripts/gpu_check_tower.py --device cpu --tiny      # CPU smoke test (tiny + demo towers)

For each tower: random weights of the published shape (seeded), exact conversion to the HF model,
parity in --dtype on --device (pixels + layer -2 patch tokens; see clips_tower/adapter/parity.py),
then forward throughput of the exported model (images/s at --batch, --dtype, CLS + patch tokens,
all layers). Prints ONE JSON line; exit 1 if any parity check fails.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time

import torch


def throughput(model, image_size: int, batch: int, dtype: torch.dtype, device: str, iters: int, warmup: int) -> float:
    """Images per second for the exported tower's forward (no grad)."""
    model.to(device=device, dtype=dtype).eval()
    x = torch.randn(batch, 3, image_size, image_size, device=device, dtype=dtype)  # (B, 3, S, S)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        for _ in range(warmup):
            model(pixel_values=x, output_hidden_states=True)
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            model(pixel_values=x, output_hidden_states=True)
        sync()
    return batch * iters / (time.perf_counter() - start)


def check_one(name: str, args) -> dict:
    from clips_tower.adapter.export import hf_tower
    from clips_tower.adapter.parity import DTYPES, check_parity
    from clips_tower.adapter.sources import load_source

    t0 = time.perf_counter()
    src = load_source(name, random_init=True, seed=args.seed)
    model, processor = hf_tower(src)
    report = check_parity(src, (model, processor), dtype=args.dtype, device=args.device, token_images=args.token_images)
    tokens = [r for r in report.rows if not r["what"].startswith("pixels")]
    pixels = [r for r in report.rows if r["what"].startswith("pixels") and r["tol_rel"] is not None]
    if src.visual is not None:  # free device memory before timing
        src.visual.to("cpu")
    ips = throughput(model, model.config.image_size, args.batch, DTYPES[args.dtype], args.device, args.iters, args.warmup)
    out = {
        "tower": name, "hf_class": type(model).__name__, "ok": report.ok,
        "pixels_max_abs": max(r["max_abs"] for r in pixels),
        "tokens": {r["what"]: {"max_abs": r["max_abs"], "max_rel": r["max_rel"], "tol_rel": r["tol_rel"]} for r in tokens},
        "images_per_s": round(ips, 2), "batch": args.batch, "seconds": round(time.perf_counter() - t0, 1),
    }
    del src, model
    gc.collect()
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="example:\n  python scripts/gpu_check_tower.py --device cuda",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    p.add_argument("--towers", nargs="+", default=["clips-l14-336", "clips-h14-224"], help="registry names")
    p.add_argument("--tiny", action="store_true", help="use the tiny/demo towers (CPU smoke test)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--token-images", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check_tower: error: CUDA is not available (use --device cpu --tiny for a smoke test)", file=sys.stderr)
        return 2
    if args.tiny:
        args.towers, args.batch, args.iters, args.warmup = ["tiny", "demo"], min(args.batch, 4), 2, 1
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    results = [check_one(name, args) for name in args.towers]
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    print(json.dumps({"device": device, "dtype": args.dtype, "torch": torch.__version__,
                      "ok": all(r["ok"] for r in results), "results": results}))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
