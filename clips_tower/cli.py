"""`clips-llava clips`: CLIPS tower pretraining and retrieval evaluation.

    clips-llava clips train --config configs/clips/tiny.yaml --data runs/world-tiny --out runs/clips-tiny
    clips-llava clips eval --model runs/clips-tiny/export --data runs/world-tiny

Each nested subcommand is a module with its own argparse and `main(argv)`; this file only routes.
"""
from __future__ import annotations

import importlib
import sys

from clips_tower.io import unknown_message

# name -> (module exposing main(argv), one-line help). Exact names only.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("clips_tower.train", "pretrain a CLIPS tower (1 process, or N under torchrun)"),
    "eval": ("clips_tower.retrieval", "zero-shot image/text retrieval R@1/5/10 on a Karpathy JSON"),
}

USAGE = """usage: clips-llava clips <train|eval> [options]

commands:
{commands}

example:
  clips-llava clips train --config configs/clips/tiny.yaml --data runs/world-tiny --out runs/clips-tiny --steps 20"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.format(commands="\n".join(f"  {n:<6} {h}" for n, (_, h) in SUBCOMMANDS.items())))
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(f"clips-llava clips: {unknown_message('command', argv[0], SUBCOMMANDS)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(SUBCOMMANDS[argv[0]][0]).main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
