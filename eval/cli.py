"""`clips-llava eval`: lmms-eval runs on a stock HF Llava directory, and the gains report.

    clips-llava eval run --model runs/llava --suite local --data runs/world --out runs/eval/clips --limit 20
    clips-llava eval run --model llava-hf/llava-1.5-7b-hf --suite paper --out runs/eval/paper --dry-run
    clips-llava eval report --run openai-clip=runs/eval/openai --run clips=runs/eval/clips \
        --baseline openai-clip --out runs/eval/report
    clips-llava eval prepare --data runs/world --out runs/eval-data   # include dir for stock lmms-eval

Exit codes: 0 ok, 1 lmms-eval failed (the reason is printed), 2 usage error.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clips_tower.flags import renamed
from clips_llava_eval import runner

ALIASES = {"--world": "--data"}  # old spelling, kept for one release

EXAMPLES = {
    "run": "example:\n  clips-llava eval run --model runs/llava --suite local --data runs/world --out runs/eval/clips --limit 20",
    "report": "example:\n  clips-llava eval report --run openai-clip=runs/eval/openai --run clips=runs/eval/clips "
              "--baseline openai-clip --out runs/eval/report",
    "prepare": "example:\n  clips-llava eval prepare --data runs/world --out runs/eval-data",
}


class UsageError(ValueError):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clips-llava eval", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES["run"])
    sub = p.add_subparsers(dest="cmd", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    r = sub.add_parser("run", help="run a suite with lmms-eval", epilog=EXAMPLES["run"], formatter_class=fmt)
    r.add_argument("--model", required=True, help="stock HF Llava directory (or a hub id for paper/llava15)")
    r.add_argument("--suite", required=True, help=f"one of: {', '.join(runner.known_suites())}")
    r.add_argument("--out", required=True, type=Path, help="output directory of this run")
    r.add_argument("--data", type=Path, help="synthetic world directory (holds eval/); needed by the local suite")
    r.add_argument("--tasks", help="comma-separated subset of the suite's tasks")
    r.add_argument("--limit", type=int, help="evaluate only the first N samples of each task")
    r.add_argument("--batch-size", type=int, default=1)
    r.add_argument("--lmms-model", choices=["auto", *runner.LMMS_MODELS], default="auto",
                   help="lmms-eval model class; auto: stock llava_hf at batch size 1, else clips_llava_hf")
    r.add_argument("--device", help="cpu or cuda (default: cuda when available; always cuda for hub suites)")
    r.add_argument("--blind", action="store_true",
                   help="blind control (local suite): every image replaced by one fixed image per task")
    r.add_argument("--dry-run", action="store_true", help="print the lmms-eval command and exit")

    rep = sub.add_parser("report", help="gains report across runs", epilog=EXAMPLES["report"], formatter_class=fmt)
    rep.add_argument("--run", action="append", required=True, metavar="NAME=DIR",
                     help="a run's name and its `eval run --out` (or lmms-eval --output_path) directory")
    rep.add_argument("--baseline", required=True, help="the NAME the deltas are measured against")
    rep.add_argument("--out", required=True, type=Path)
    rep.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the 95%% interval")
    rep.add_argument("--seed", type=int, default=0)

    pre = sub.add_parser("prepare", help="write the local tasks' data + YAML as an lmms-eval include dir",
                         epilog=EXAMPLES["prepare"], formatter_class=fmt)
    pre.add_argument("--data", required=True, type=Path, help="synthetic world directory (holds eval/)")
    pre.add_argument("--out", type=Path, default=Path("runs/eval-data"))
    pre.add_argument("--tasks", help="comma-separated local task names (default: all)")
    return p


def _split(s: str | None) -> list[str] | None:
    return [t.strip() for t in s.split(",") if t.strip()] if s else None


def _check_model(model: str, local: bool) -> None:
    """A local --model must be a complete stock Llava dir (checked here: lmms-eval's own failure is a
    traceback in its log); a hub id is left to lmms-eval."""
    from clips_tower.inputs import LLAVA, InputError, check_model_dir, is_hub_id

    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"--model {model}: no config.json (not an HF model directory)")
        try:
            check_model_dir(path, LLAVA, processor=True, tokenizer=True, what="Llava model")
        except InputError as e:
            raise UsageError(f"--model {e}") from None
    elif local or not is_hub_id(model):
        raise UsageError(f"--model {model}: directory not found")


def cmd_run(args) -> int:
    import torch

    suite = runner.load_suite(args.suite)
    tasks = runner.select_tasks(suite, _split(args.tasks))
    if args.limit is not None and args.limit < 1 or args.batch_size < 1:
        raise UsageError("--limit and --batch-size must be >= 1")
    _check_model(args.model, suite.local)
    # The hub suites need a GPU: their dry run on a CPU machine still prints the GPU command.
    device = args.device or ("cuda" if torch.cuda.is_available() or not suite.local else "cpu")
    lmms_model = args.lmms_model if args.lmms_model != "auto" else (
        "llava_hf" if args.batch_size == 1 else "clips_llava_hf")
    out = args.out.resolve()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {args.out}: is a file, not a directory")
    include_path = None
    if suite.local:
        if args.data is None:
            raise UsageError(f"suite {suite.name!r} reads a synthetic world: pass --data DIR")
        include_path = out / "tasks"
    elif args.blind:
        raise UsageError("--blind needs a local suite (it rewrites the local tasks' images)")
    model = str(Path(args.model).resolve()) if Path(args.model).is_dir() else args.model
    cmd = runner.build_command(model, tasks, out / "lmms-eval", lmms_model=lmms_model, device=device,
                               batch_size=args.batch_size, limit=args.limit, include_path=include_path,
                               offline=suite.local)
    if args.dry_run:
        print(cmd.shell())
        return 0
    if suite.local:
        from clips_llava_eval.data import prepare

        try:
            counts = prepare(args.data, include_path, tasks, blind=args.blind)
        except (FileNotFoundError, ValueError) as e:
            raise UsageError(str(e)) from e
        print(("blind control, " if args.blind else "") + "local data: " + ", ".join(f"{t} {n}" for t, n in counts.items()))
    print(f"$ {cmd.shell()}", flush=True)
    try:
        results = runner.run_lmms_eval(cmd, tasks, out / "lmms-eval", out / "lmms_eval.log")
    except runner.EvalFailed as e:
        print(f"clips-llava eval run: error: {e}", file=sys.stderr)
        return 1
    record = {"model": model, "suite": suite.name, "tasks": tasks, "limit": args.limit,
              "blind": args.blind, "lmms_model": lmms_model, "command": cmd.shell(), "results": str(results)}
    (out / "run.json").write_text(json.dumps(record, indent=2))
    print(f"results: {results}")
    return 0


def cmd_report(args) -> int:
    from clips_llava_eval.report import build_report, parse_runs

    try:
        runs = parse_runs(args.run)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from e
    if args.baseline not in runs:
        raise UsageError(f"--baseline {args.baseline!r} is not one of the runs: {', '.join(runs)}")
    try:
        table = build_report(runs, args.baseline, args.out, n_boot=args.bootstrap, seed=args.seed)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from e
    print(table)
    print(f"wrote {args.out / 'report.md'}, report.json, gains.png")
    return 0


def cmd_prepare(args) -> int:
    from clips_llava_eval.data import prepare

    try:
        counts = prepare(args.data, args.out, _split(args.tasks))
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(str(e)) from e
    for task, n in counts.items():
        print(f"{task}: {n} samples")
    print(f"include dir: {args.out}  (python -m lmms_eval ... --include_path {args.out})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(renamed(argv, ALIASES, "clips-llava eval"))  # argparse exits 2 on bad usage
    try:
        return {"run": cmd_run, "report": cmd_report, "prepare": cmd_prepare}[args.cmd](args)
    except (UsageError, ValueError) as e:
        from llava_train.errors import report

        return report(f"clips-llava eval {args.cmd}", e)


if __name__ == "__main__":
    sys.exit(main())
