"""Benchmark the chat path: time to first token and decode tokens/s (not a test; prints numbers).

    python scripts/bench_chat.py                                  # tiny random Llava (llava_train.tiny)
    python scripts/bench_chat.py --model runs/demo/llava --image cat.png --runs 5
    python scripts/bench_chat.py --model DIR --load-4bit --device cuda

It times what a user waits for in `clips-llava chat`: one `ChatSession.generate` call (chat
template, image preprocessing, prefill, decoding) with an image in the first turn. Time to first
token = call start -> first generated token reaches the streamer; tokens/s = generated tokens
after the first / time after the first. Generation is greedy and forced to `--max-new-tokens`
tokens (EOS ignored) so runs are comparable. Run 0 is a warm-up and is not counted.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from transformers.generation.streamers import BaseStreamer

TINY = "tiny random Llava (llava_train.tiny)"


class TimingStreamer(BaseStreamer):
    """Records when each generated token arrives (the first `put` is the prompt)."""

    def __init__(self):
        self.prompt_seen, self.times = False, []

    def put(self, value):
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        self.times.append(time.perf_counter())

    def end(self):
        pass


def bench(session, prompt: str, image, runs: int, new_tokens: int) -> dict:
    ttft, tps = [], []
    for i in range(runs + 1):
        session.image = image
        session.reset()
        streamer = TimingStreamer()
        t0 = time.perf_counter()
        session.generate(prompt, streamer=streamer)
        t = streamer.times
        if i == 0:
            continue  # warm-up
        ttft.append(t[0] - t0)
        if len(t) > 1:
            tps.append((len(t) - 1) / (t[-1] - t[0]))
    return {"ttft_s": statistics.median(ttft), "ttft_max_s": max(ttft),
            "tokens_per_s": statistics.median(tps) if tps else float("nan"), "tokens": len(t)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog="example:\n  python scripts/bench_chat.py --runs 5",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", metavar="DIR", help="Llava dir (default: a tiny random Llava built in a temp dir)")
    p.add_argument("--base", metavar="DIR", help="base Llava dir when --model is a LoRA adapter")
    p.add_argument("--image", metavar="PATH", help="image for the first turn (default: a 336x336 gradient)")
    p.add_argument("--prompt", default="Describe the image in detail.")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--load-4bit", action="store_true")
    q.add_argument("--load-8bit", action="store_true")
    return p.parse_args(argv)


def quiet_libraries() -> None:
    import logging

    import transformers

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def first_image(path: str | None):
    """The image at `path`, or a 336x336 RGB gradient."""
    import numpy as np
    from PIL import Image

    from llava_train.chat.session import load_image

    if path:
        return load_image(path)
    ramp = np.linspace(0, 255, 336, dtype=np.uint8)
    return Image.fromarray(np.stack([np.tile(ramp, (336, 1)), np.tile(ramp[:, None], (1, 336)),
                                     np.full((336, 336), 128, np.uint8)], axis=-1))


def report(name: str, model, quant: str | None, load_s: float, r: dict, runs: int) -> None:
    import torch

    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {name}  params: {n_params / 1e6:.2f}M  device: {model.device}  quant: {quant or 'none'}  "
          f"threads: {torch.get_num_threads()}")
    print(f"load: {load_s:.2f} s")
    print(f"time to first token: {r['ttft_s'] * 1000:.1f} ms (median of {runs}, max {r['ttft_max_s'] * 1000:.1f} ms)")
    print(f"decode: {r['tokens_per_s']:.1f} tokens/s ({r['tokens']} tokens per answer)")
    goal = "met" if r["ttft_s"] <= 1.0 else "NOT met"
    print(f"goal first token <= 1 s: {goal}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from llava_train.chat.session import ChatInputError, ChatSession, load_llava

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from llava_train.tiny import make_tiny_llava

            model_dir = make_tiny_llava(Path(tmp) / "tiny-llava")
        image = first_image(args.image)
        quant = "4bit" if args.load_4bit else "8bit" if args.load_8bit else None
        t0 = time.perf_counter()
        try:
            model, processor = load_llava(model_dir, base=args.base, quant=quant, device=args.device)
        except ChatInputError as e:
            print(f"bench_chat: error: {e}", file=sys.stderr)
            return 2
        load_s = time.perf_counter() - t0
        session = ChatSession(model, processor, temperature=0, max_new_tokens=args.max_new_tokens)
        base_kwargs = session.generation_kwargs
        session.generation_kwargs = lambda: {**base_kwargs(), "min_new_tokens": args.max_new_tokens}
        r = bench(session, args.prompt, image, args.runs, args.max_new_tokens)
        report(args.model or TINY, model, quant, load_s, r, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
