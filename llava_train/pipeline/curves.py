"""Training curves of the demo's LLaVAs: stage-1 and stage-2 loss per run, one PNG.

    python -m llava_train.pipeline.curves --out runs/demo/report/curves.png \
        --run clip-web=runs/demo/llava/clip-web --run clips=runs/demo/llava/clips

Reads the `losses` ([[step, loss], ...], the Trainer's logged training loss) of each run's
`stage1/run_report.json` and `stage2/run_report.json`, written by `clips-llava llava train`. Where the
run has an existence-first phase of stage 2 (`stage2-existence/run_report.json`), the stage-2 panel
draws it first and the full mix after it, its steps counted on from the phase's last step.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from clips_tower.io import save_figure

STAGES = ("stage1", "stage2")
EXISTENCE_PHASE = "stage2-existence"  # the run dir of stage 2's existence-first phase (the demo's step name too)


def read_losses(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """{stage: [(step, loss), ...]} for the stages whose run_report.json exists."""
    out = {}
    for stage in (*STAGES, EXISTENCE_PHASE):
        path = run_dir / stage / "run_report.json"
        if path.is_file():
            out[stage] = [(int(s), float(v)) for s, v in json.loads(path.read_text()).get("losses", [])]
    return out


def stage2_curve(by_stage: dict[str, list[tuple[int, float]]]) -> tuple[list[tuple[int, float]], int | None]:
    """The stage-2 panel's points: the existence-first phase, if any, then the full mix counted on from
    its last step; and that step (None without the phase)."""
    first = by_stage.get(EXISTENCE_PHASE, [])
    offset = first[-1][0] if first else 0
    return first + [(s + offset, v) for s, v in by_stage.get("stage2", [])], (offset if first else None)


def plot_curves(runs: dict[str, Path], path: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """Write the PNG (two panels, one line per run) atomically; return the curves it drew."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {name: read_losses(d) for name, d in runs.items()}
    if not any(curves.values()):
        raise FileNotFoundError(f"no stage run_report.json under {', '.join(str(d) for d in runs.values())}")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, stage in zip(axes, STAGES):
        switch = None
        for name, by_stage in curves.items():
            points, at = stage2_curve(by_stage) if stage == "stage2" else (by_stage.get(stage, []), None)
            switch = at if at is not None else switch
            if points:
                ax.plot([s for s, _ in points], [v for _, v in points], label=name, linestyle="--" if "random" in name else "-")
        if switch is not None:
            ax.axvline(switch, color="grey", linewidth=0.8, linestyle=":")
        title = "projector only" if stage == "stage1" else "projector + LLM" + (
            " (existence conversations, then the full mix)" if switch is not None else "")
        ax.set_title(f"{stage}: {title}", fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (per label token)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return curves


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llava_train.pipeline.curves", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="PNG to write")
    p.add_argument("--run", action="append", required=True, metavar="NAME=DIR", help="a LLaVA run dir (holds stage1/, stage2/)")
    args = p.parse_args(argv)
    runs = {}
    for spec in args.run:
        name, sep, d = spec.partition("=")
        if not sep or not name or not d:
            print(f"curves: error: --run {spec!r}: expected NAME=DIR", file=sys.stderr)
            return 2
        runs[name] = Path(d)
    try:
        curves = plot_curves(runs, args.out)
    except FileNotFoundError as e:
        print(f"curves: error: {e}", file=sys.stderr)
        return 2
    for name, by_stage in curves.items():
        last = ", ".join(f"{s} {pts[-1][1]:.3f}" for s, pts in by_stage.items() if pts)
        print(f"{name}: final loss {last}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
