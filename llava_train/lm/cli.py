"""`clips-llava lm init|pretrain`: the small language model for the embedded world.

    clips-llava lm init --preset tiny --data runs/world --out runs/lm-init
    clips-llava lm pretrain --model runs/lm-init --data runs/world --out runs/lm --steps 200
    clips-llava lm pretrain --model runs/lm-init --data runs/world/lookup.txt --out runs/lm-lookup --steps 600 --lr 1e-3
    clips-llava lm pretrain --model runs/lm-lookup --data runs/world/corpus.txt runs/world/lookup.txt --out runs/lm
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from clips_tower.flags import renamed
from llava_train.lm.presets import LM_PRESETS

# old spellings, kept for one release
ALIASES = {"--corpus": "--data", "--batch_size": "--batch-size", "--block_size": "--block-size"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="clips-llava lm", description="small Llama LM for the embedded world",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  clips-llava lm init --preset tiny --data runs/world --out runs/lm-init\n"
               "  clips-llava lm pretrain --model runs/lm-init --data runs/world --out runs/lm --steps 200")
    sub = p.add_subparsers(dest="cmd", required=True)
    init = sub.add_parser(
        "init", help="train a byte-level BPE tokenizer on the corpus and create a random Llama",
        epilog="example: clips-llava lm init --preset tiny --data runs/world --out runs/lm-init",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    init.add_argument("--preset", default="tiny", choices=sorted(LM_PRESETS))
    init.add_argument("--data", required=True, help="world dir (uses corpus.txt) or a text file")
    init.add_argument("--out", required=True)
    init.add_argument("--seed", type=int, default=0)
    pre = sub.add_parser(
        "pretrain", help="short causal-LM pretraining on the corpus (HF Trainer)",
        epilog="example: clips-llava lm pretrain --model runs/lm-init --data runs/world --out runs/lm --steps 200",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    pre.add_argument("--model", required=True, help="HF causal-LM dir (from `lm init`)")
    pre.add_argument("--data", required=True, nargs="+",
                     help="world dir (uses corpus.txt) or text file(s), read together, e.g. "
                          "WORLD/corpus.txt WORLD/lookup.txt")
    pre.add_argument("--out", required=True)
    pre.add_argument("--steps", type=int, default=200)
    pre.add_argument("--lr", type=float, default=3e-3)
    pre.add_argument("--batch-size", type=int, default=16)
    pre.add_argument("--block-size", type=int, default=128)
    pre.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(renamed(argv, ALIASES, "clips-llava lm"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from llava_train.lm.build import init_lm, pretrain_lm

    try:
        if Path(args.out).exists() and not Path(args.out).is_dir():
            raise ValueError(f"--out {args.out}: is a file, not a directory")
        if args.cmd == "init":
            init_lm(args.data, args.out, preset=args.preset, seed=args.seed)
        else:
            data = args.data[0] if len(args.data) == 1 else args.data
            r = pretrain_lm(args.model, data, args.out, steps=args.steps, lr=args.lr,
                            batch_size=args.batch_size, block_size=args.block_size, seed=args.seed)
            print(f"lm pretrain: loss {r['first_loss']:.3f} -> {r['last_loss']:.3f} in {r['steps']} steps")
    except (FileNotFoundError, ValueError) as e:
        from llava_train.errors import report

        return report(f"clips-llava lm {args.cmd}", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
