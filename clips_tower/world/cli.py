"""`clips-llava synth`: write the embedded synthetic world to a directory.

    clips-llava synth --out runs/world --preset tiny
    clips-llava synth --out runs/world --preset demo --seed 1 --overwrite
    clips-llava synth --out runs/world48 --preset demo --set image_size=48 --set pretrain=2000

Bad input (unknown preset or field, a size <= 0, a negative seed, an unwritable or non-empty
--out without --overwrite) prints one line on stderr and exits with code 2, writing nothing.
"""
from __future__ import annotations

import argparse
import sys
import time

from clips_tower.world.presets import PRESETS, preset_fields

EXAMPLE = "example:\n  clips-llava synth --out runs/world --preset tiny --seed 0"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not argparse's usage block
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="clips-llava synth",
        description="Write the embedded synthetic world: webdataset shards for CLIPS pretraining, LLaVA-1.5 "
                    "stage-1/stage-2 JSON, held-out eval splits, a text corpus and MANIFEST.json.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output directory (created; must be empty unless --overwrite)")
    parser.add_argument("--preset", default="tiny", help=f"world size: {', '.join(PRESETS)} (default: tiny)")
    parser.add_argument("--seed", default="0", help="random seed, a non-negative integer (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous world at --out")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=N",
                        help=f"override a preset field (repeatable); fields: {', '.join(preset_fields())}")
    parser.add_argument("--workers", type=int, default=None, help="render processes (default: 2 for large worlds)")
    return parser


def _int(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{what} must be an integer, got {text!r}") from None


def parse_overrides(items: list[str]) -> dict[str, int]:
    out = {}
    for item in items:
        field, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--set expects FIELD=N, got {item!r}")
        out[field.strip()] = _int(value.strip(), f"--set {field.strip()}")
    return out


def main(argv: list[str] | None = None) -> int:
    from clips_tower.world.generate import generate_world
    from clips_tower.world.writers import WorldError

    try:
        args = build_parser().parse_args(argv)
        seed = _int(args.seed, "--seed")
        overrides = parse_overrides(args.overrides)
        if args.workers is not None and args.workers < 1:
            raise UsageError(f"--workers must be at least 1, got {args.workers}")
        t0 = time.perf_counter()
        manifest = generate_world(args.out, preset=args.preset, seed=seed, overwrite=args.overwrite,
                                  workers=args.workers, **overrides)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except (UsageError, WorldError) as e:
        print(f"clips-llava synth: error: {e}", file=sys.stderr)
        return 2
    counts = manifest["counts"]
    print(f"wrote synthetic world {manifest['preset']!r} (seed {manifest['seed']}, {manifest['image_size']} px) "
          f"to {args.out} in {time.perf_counter() - t0:.1f}s: {len(manifest['files'])} files")
    print("  " + ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
