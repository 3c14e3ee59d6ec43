"""`clips-llava tower ...`: export a vision tower as an HF-native LLaVA tower and check its parity.

    clips-llava tower list
    clips-llava tower export --model configs/clips/models/tiny.json --random-init --out runs/towers/tiny
    clips-llava tower check  --model configs/clips/models/tiny.json --random-init --out runs/towers/tiny

Exit codes: 0 ok, 1 parity beyond tolerance, 2 bad usage / unloadable or unsupported source.
"""
from __future__ import annotations

import argparse
import json
import sys

from clips_tower.flags import renamed

ALIASES = {"--source": "--model", "--exported": "--out"}  # old spellings, kept for one release

EXPORT_EXAMPLE = """example:
  clips-llava tower export --model clips-l14-336 --random-init --out runs/towers/clips-l14-336-random
  clips-llava tower export --model runs/clips/tiny/export --out runs/towers/tiny   # from `clips train`
"""
CHECK_EXAMPLE = """example:
  clips-llava tower check --model configs/clips/models/tiny.json --random-init --out runs/towers/tiny
"""
LIST_EXAMPLE = "example:\n  clips-llava tower list\n"


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True,
                   help="tower name (see `tower list`), open_clip dir, hf-hub:ORG/NAME, architecture JSON/name, "
                        "or HF CLIP id/dir")
    p.add_argument("--random-init", action="store_true", help="random weights for an architecture (seeded)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init (check must use the export's)")
    p.add_argument("--preprocess", choices=["clips", "openai"], default=None,
                   help="preprocessing recipe when the source has none (default: by tower family)")


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="clips-llava tower", description=__doc__.split("\n\n")[0],
                                     epilog=EXPORT_EXAMPLE + CHECK_EXAMPLE, formatter_class=raw)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the named towers", epilog=LIST_EXAMPLE, formatter_class=raw)
    ex = sub.add_parser("export", help="write an HF vision-model directory", epilog=EXPORT_EXAMPLE, formatter_class=raw)
    _source_args(ex)
    ex.add_argument("--out", required=True, help="output directory (written atomically)")
    ex.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    ex.add_argument("--check", action="store_true", help="run the fp32 parity check right after exporting")
    ch = sub.add_parser("check", help="compare source and export (pixels + layer -2 tokens)",
                        epilog=CHECK_EXAMPLE, formatter_class=raw)
    _source_args(ch)
    ch.add_argument("--out", required=True, help="the directory `tower export --out` wrote")
    ch.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ch.add_argument("--device", default="cpu")
    ch.add_argument("--token-images", type=int, default=2, help="images pushed through both towers")
    ch.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _list() -> int:
    from clips_tower.adapter.registry import TOWERS

    print(f"{'name':<22}{'hf class':<18}{'tokens':>7}  source / --random-init arch")
    for s in TOWERS.values():
        print(f"{s.name:<22}{s.hf_class:<18}{s.num_image_tokens:>7}  {s.source or '(train it: clips train)'} / {s.arch}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(renamed(argv, ALIASES, "clips-llava tower"))
    if args.cmd == "list":
        return _list()
    from pathlib import Path

    from transformers.utils import logging as hf_logging

    from clips_tower.adapter.export import TOWER_INFO, export_source
    from clips_tower.adapter.parity import check_parity
    from clips_tower.adapter.sources import load_source

    hf_logging.disable_progress_bar()
    try:
        if args.cmd == "check":
            from clips_tower.inputs import check_model_dir, read_json_object

            if not (Path(args.out) / "config.json").is_file():
                raise ValueError(f"{args.out}: not an exported tower (no config.json)")
            check_model_dir(args.out, processor=True, what="exported tower")  # damaged weights: named
            info_file = Path(args.out) / TOWER_INFO
            info = read_json_object(info_file, TOWER_INFO) if info_file.is_file() else None
            if info and (info.get("random_init"), info.get("seed")) != (args.random_init, args.seed if args.random_init else None):
                raise ValueError(f"{args.out} was exported with random_init={info.get('random_init')} "
                                 f"seed={info.get('seed')}; pass the same --random-init/--seed")
        src = load_source(args.model, random_init=args.random_init, seed=args.seed, preprocess=args.preprocess)
        if args.cmd == "export":
            if Path(args.out).exists() and not Path(args.out).is_dir():
                raise ValueError(f"--out {args.out}: is a file, not a directory")
            out, _ = export_source(src, args.out, overwrite=args.overwrite)
            print(f"exported {args.model} -> {out}")
            if not args.check:
                return 0
            exported, dtype, device, n, as_json = out, "float32", "cpu", 2, False
        else:
            exported, dtype, device, n, as_json = args.out, args.dtype, args.device, args.token_images, args.json
        report = check_parity(src, exported, dtype=dtype, device=device, token_images=n)
    except (ValueError, FileExistsError) as e:  # SourceError / UnsupportedTower are ValueErrors
        from clips_tower.inputs import debug_enabled

        if debug_enabled():
            raise
        print(f"clips-llava tower {args.cmd}: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"ok": report.ok, "rows": report.rows}) if as_json else report.format())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
