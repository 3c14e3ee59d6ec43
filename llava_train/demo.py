"""The main job (`clips-llava demo`, what `make demo` runs): the whole path end to end, offline.

    clips-llava demo --out runs/demo                  # the `demo` preset: about 15 minutes on 2 CPU cores
    clips-llava demo --out runs/demo-tiny --preset tiny   # minutes; what the end-to-end test runs
    clips-llava demo --out runs/demo --fresh          # redo every step

Steps (each a real subcommand, run as a subprocess with its own log under OUT/logs/):
  1. generate the synthetic world;  2. pretrain two towers with the same budget, `clip-web` (web
  captions only: the OpenAI-CLIP stand-in) and `clips` (the full CLIPS method), and measure their
  retrieval R@1;  3. export both as HF-native towers with the parity check;  4. create and pretrain
  the small language model;  5. per tower, LLaVA stage 1 and stage 2 through the real stage scripts
  (DeepSpeed on CPU);  6. evaluate both LLaVAs on the `local` lmms-eval suite;  7. write the gains
  report and print the chat command. Completed steps are recorded in OUT/demo_manifest.json with
  output hashes and skipped on a re-run (see `demo_steps.py`).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from llava_train.demo_steps import Step, StepFailed, run_steps

REPO = Path(__file__).resolve().parents[1]
BASELINE = "clip-web"


@dataclass(frozen=True)
class DemoPreset:
    world: str                                   # `clips-llava synth --preset`
    towers: dict[str, str]                       # tower name -> CLIPS run config (relative to repo)
    lm_preset: str                               # `clips-llava lm init --preset`
    lm_steps: int
    stage1: str                                  # LLaVA run configs (relative to repo)
    stage2: str
    clips_steps: int | None = None               # None: the run config's own budget
    stage_overrides: dict[str, list[str]] = field(default_factory=dict)
    eval_limit: int | None = None


DEMO_PRESETS: dict[str, DemoPreset] = {
    "demo": DemoPreset(
        world="demo",
        towers={"clip-web": "configs/clips/clip-web.yaml", "clips": "configs/clips/clips.yaml"},
        lm_preset="demo", lm_steps=150, clips_steps=150, eval_limit=60,
        stage1="configs/llava/stage1_demo.yaml", stage2="configs/llava/stage2_demo.yaml",
    ),
    "tiny": DemoPreset(
        world="tiny",
        towers={"clip-web": "configs/clips/tiny-clip-web.yaml", "clips": "configs/clips/tiny.yaml"},
        lm_preset="tiny", lm_steps=4, clips_steps=4,
        stage1="configs/llava/stage1_tiny.yaml", stage2="configs/llava/stage2_tiny.yaml",
        stage_overrides={"stage1": ["--max_steps", "2"], "stage2": ["--max_steps", "2"]},
        eval_limit=3,
    ),
}


def get_preset(name: str) -> DemoPreset:
    if name not in DEMO_PRESETS:
        raise ValueError(f"unknown demo preset {name!r}; known: {', '.join(DEMO_PRESETS)}")
    return DEMO_PRESETS[name]


def build_steps(preset: DemoPreset, out: Path, seed: int) -> list[Step]:
    """The demo as data: one `Step` per subcommand, paths under `out`."""
    cli = [sys.executable, "-m", "llava_train.cli"]
    world = out / "world"
    steps = [Step("world", cli + ["synth", "--out", str(world), "--preset", preset.world,
                                  "--seed", str(seed), "--overwrite"], ["world/MANIFEST.json"])]
    for name, cfg in preset.towers.items():
        run = out / "towers" / name
        argv = cli + ["clips", "train", "--config", str(REPO / cfg), "--data", str(world),
                      "--out", str(run), "--seed", str(seed)]
        if preset.clips_steps is not None:
            argv += ["--steps", str(preset.clips_steps)]
        steps.append(Step(f"tower-{name}", argv, [f"towers/{name}/export"]))
        steps.append(Step(f"retrieval-{name}", cli + [
            "clips", "eval", "--model", str(run / "export"), "--data", str(world),
            "--out", str(run / "retrieval.json")], [f"towers/{name}/retrieval.json"]))
        steps.append(Step(f"export-{name}", cli + [
            "tower", "export", "--source", str(run / "export"), "--out", str(out / "hf-towers" / name),
            "--overwrite", "--check"], [f"hf-towers/{name}"]))
    steps.append(Step("lm-init", cli + ["lm", "init", "--preset", preset.lm_preset, "--corpus", str(world),
                                        "--out", str(out / "lm-init"), "--seed", str(seed)], ["lm-init"]))
    steps.append(Step("lm-pretrain", cli + ["lm", "pretrain", "--model", str(out / "lm-init"), "--corpus",
                                            str(world), "--out", str(out / "lm"), "--steps",
                                            str(preset.lm_steps), "--seed", str(seed)], ["lm"]))
    ds_env = {"NPROC": "1", "DS_ACCELERATOR": "cpu"}
    for name in preset.towers:
        s1, s2 = out / "llava" / name / "stage1", out / "llava" / name / "stage2"
        common = ["--model_name_or_path", str(out / "lm"), "--vision_tower", str(out / "hf-towers" / name),
                  "--image_folder", str(world / "llava" / "images"), "--seed", str(seed)]
        steps.append(Step(f"stage1-{name}", ["bash", str(REPO / "scripts" / "pretrain_projector.sh"),
                                             "--config", str(REPO / preset.stage1), *common,
                                             "--data_path", str(world / "llava" / "stage1.json"),
                                             "--output_dir", str(s1), *preset.stage_overrides.get("stage1", [])],
                          [f"llava/{name}/stage1"], env=ds_env))
        steps.append(Step(f"stage2-{name}", ["bash", str(REPO / "scripts" / "finetune.sh"),
                                             "--config", str(REPO / preset.stage2), *common,
                                             "--pretrain_mm_mlp_adapter", str(s1),
                                             "--data_path", str(world / "llava" / "stage2.json"),
                                             "--output_dir", str(s2), *preset.stage_overrides.get("stage2", [])],
                          [f"llava/{name}/stage2/config.json", f"llava/{name}/stage2/model.safetensors"],
                          env=ds_env))
    for name in preset.towers:
        argv = cli + ["eval", "run", "--model", str(out / "llava" / name / "stage2"), "--suite", "local",
                      "--world", str(world), "--out", str(out / "eval" / name), "--device", "cpu"]
        if preset.eval_limit is not None:
            argv += ["--limit", str(preset.eval_limit)]
        steps.append(Step(f"eval-{name}", argv, [f"eval/{name}"]))
    report_argv = cli + ["eval", "report", "--baseline", BASELINE, "--out", str(out / "report")]
    for name in preset.towers:
        report_argv += ["--run", f"{name}={out / 'eval' / name}"]
    steps.append(Step("report", report_argv, ["report/report.md", "report/report.json", "report/gains.png"]))
    return steps


def _retrieval_table(out: Path, towers: list[str]) -> str:
    lines = ["| tower | I→T R@1 | T→I R@1 |", "|---|---|---|"]
    for name in towers:
        path = out / "towers" / name / "retrieval.json"
        m = json.loads(path.read_text()) if path.exists() else {}
        i2t, t2i = m.get("i2t_R@1", "?"), m.get("t2i_R@1", "?")  # keys written by `clips eval`
        fmt = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else str(v)  # noqa: E731
        lines.append(f"| {name} | {fmt(i2t)} | {fmt(t2i)} |")
    return "\n".join(lines)


def write_summary(out: Path, preset_name: str, preset: DemoPreset, seed: int, times: dict[str, float],
                  wall: float) -> str:
    towers = list(preset.towers)
    report_md = (out / "report" / "report.md").read_text() if (out / "report" / "report.md").exists() else ""
    step_rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in times.items())
    chat_model = out / "llava" / "clips" / "stage2"
    image = next(iter(sorted((out / "world" / "eval" / "images").glob("*.png"))), None)
    chat = f"clips-llava chat --model {chat_model}" + (f" --image {image}" if image else "")
    text = (f"# clips-llava demo summary\n\npreset `{preset_name}`, seed {seed}, {date.today().isoformat()}, "
            f"total wall time {wall:.1f} s (this run; skipped steps show their recorded time)\n\n"
            f"## Step times (s)\n\n| step | seconds |\n|---|---|\n{step_rows}\n\n"
            f"## Tower retrieval (synthetic world, held-out split)\n\n{_retrieval_table(out, towers)}\n\n"
            f"## LLaVA gains over `{BASELINE}`\n\n{report_md}\n\n## Chat with the CLIPS LLaVA\n\n    {chat}\n")
    tmp = out / "summary.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / "summary.md")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clips-llava demo", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  clips-llava demo --out runs/demo\n  clips-llava demo --out runs/demo-tiny --preset tiny")
    parser.add_argument("--out", required=True, type=Path, help="run directory (world, towers, models, eval, report)")
    parser.add_argument("--preset", default="demo", help=f"one of: {', '.join(DEMO_PRESETS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="ignore the manifest and redo every step")
    parser.add_argument("--quiet", action="store_true", help="do not echo the steps' output (it is still logged)")
    args = parser.parse_args(argv)
    try:
        preset = get_preset(args.preset)
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {args.out}: is a file, not a directory")
    except ValueError as e:
        print(f"clips-llava demo: error: {e}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    t0 = time.perf_counter()
    try:
        times = run_steps(build_steps(preset, out, args.seed), out, fresh=args.fresh, echo=not args.quiet)
    except StepFailed as e:
        print(f"clips-llava demo: {e}. Fix it and re-run the same command to resume from that step.",
              file=sys.stderr)
        return 1
    print(write_summary(out, args.preset, preset, args.seed, times, time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
