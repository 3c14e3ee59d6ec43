"""The main job (`clips-llava demo`, what `make demo` runs): the whole path end to end, offline.

    clips-llava demo --out runs/demo                  # the `demo` preset (about 23 min on 2 cores: see README)
    clips-llava demo --out runs/demo-tiny --preset tiny   # minutes; what the end-to-end test runs
    clips-llava demo --out runs/demo --fresh          # redo every step
    clips-llava demo --out runs/demo --jobs 1         # one step at a time (default: up to 3 side by side)
    clips-llava demo --out runs/demo-2seeds --seeds 2 # LLaVA stages + eval repeated per tower and seed
    clips-llava demo --out runs/ablation --preset ablation   # the towers' text-reduction ablation (ablation.py)

Steps (each a real subcommand, run as a subprocess with its own log under OUT/logs/, one progress
line each):
  1. generate the synthetic world;  2. pretrain two towers with the same budget, `clip-web` (web
  captions only: the OpenAI-CLIP stand-in) and `clips` (the full CLIPS method), export a third,
  `random-tower` (the clips architecture, 0 steps: the control for tower pretraining), and measure
  their retrieval R@1;  3. export them as HF-native towers with the parity check;  4. create the
  small language model and pretrain it, on the world's look-up lines, then on its corpus;  5. per
  tower (and LLaVA seed), stage 1 and stage 2 through the real stage scripts (DeepSpeed on CPU),
  stage 2 first on the world's existence conversations alone (`stage2-existence-<run>`, the same
  config and script), then on the full mix from that LLaVA;
  6. evaluate every LLaVA on every held-out item of the `local` lmms-eval suite, and the first
  seed's again blind (`<run>-blind`: every image replaced by one fixed image);  7. write the gains
  report with its vision-gap table, the training curves and the summary, and print the chat command.
  Completed steps are recorded in OUT/demo_manifest.json with output hashes and skipped on a re-run
  (see `steps.py`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from clips_tower.io import CHECKOUT, atomic_write, unknown_message
from clips_tower.world.generate import EXISTENCE_FILE
from llava_train.pipeline import ablation
from llava_train.pipeline.curves import EXISTENCE_PHASE
from llava_train.pipeline.steps import Step, StepFailed, run_steps

REPO = CHECKOUT  # configs/ and scripts/ come from the checkout
BASELINE = "clip-web"


RANDOM_TOWER = "random-tower"


@dataclass(frozen=True)
class DemoPreset:
    world: str                                   # `clips-llava synth --preset`
    towers: dict[str, str]                       # tower name -> CLIPS run config (relative to repo)
    lm_preset: str                               # `clips-llava lm init --preset`
    lm_steps: int                                # on the world's corpus.txt + lookup.txt
    stage1: str                                  # LLaVA run configs (relative to repo)
    stage2: str
    lm_lookup_steps: int = 0                     # first, on lookup.txt alone (0: no such phase)
    existence_steps: int = 0                     # stage 2 first on llava/stage2_existence.json alone (0: no such phase)
    lm_lr: float = 3e-3                          # both LM phases
    clips_steps: int | None = None               # None: the run config's own budget
    stage_overrides: dict[str, list[str]] = field(default_factory=dict)
    eval_limit: int | None = None                # None: every held-out item (the demo's setting)
    random_tower: str | None = None              # a tower config trained 0 steps: the `random-tower` control
    blind: tuple[str, ...] | None = None         # towers whose first-seed LLaVA is also evaluated blind (None: all)


DEMO_PRESETS: dict[str, DemoPreset] = {
    "demo": DemoPreset(
        world="demo",
        towers={"clip-web": "configs/clips/clip-web.yaml", "clips": "configs/clips/clips.yaml"},
        # the LM's curriculum: look-up lines alone, then with the corpus. Mixed into the corpus from the
        # start, look-up is not learned in 600 steps; alone it is (README, tenth round)
        lm_preset="demo", lm_lookup_steps=600, lm_steps=150, lm_lr=1e-3, random_tower="configs/clips/clips.yaml",
        # stage 2 first on the existence conversations alone: from the full mix at once the LLaVA did not
        # learn to answer POPE from the image (0.50-0.52, blind or not); with this phase first it answered
        # 0.68-0.73, blind 0.46-0.54 (README, sixteenth and seventeenth rounds). 200 steps did as well as 400
        existence_steps=200,
        stage1="configs/llava/stage1_demo.yaml", stage2="configs/llava/stage2_demo.yaml",
    ),
    "tiny": DemoPreset(
        world="tiny",
        towers={"clip-web": "configs/clips/tiny-clip-web.yaml", "clips": "configs/clips/tiny.yaml"},
        lm_preset="tiny", lm_lookup_steps=2, lm_steps=4, clips_steps=4, existence_steps=2,
        random_tower="configs/clips/tiny.yaml",
        stage1="configs/llava/stage1_tiny.yaml", stage2="configs/llava/stage2_tiny.yaml",
        stage_overrides={"stage1": ["--max_steps", "2"], "stage2": ["--max_steps", "2"]},
        eval_limit=3, blind=("clips",),  # test time: one blind control exercises the path
    ),
}


def get_preset(name: str) -> DemoPreset:
    if name not in DEMO_PRESETS:  # the message lists the ablation presets too: `--preset` takes both
        raise ValueError(unknown_message("demo preset", name, [*DEMO_PRESETS, *ablation.ABLATION_PRESETS]))
    return DEMO_PRESETS[name]


def tower_configs(preset: DemoPreset) -> dict[str, str]:
    """Tower name -> CLIPS run config: the trained towers, then the random-tower control if any."""
    return {**preset.towers, **({RANDOM_TOWER: preset.random_tower} if preset.random_tower else {})}


def tower_names(preset: DemoPreset) -> list[str]:
    return list(tower_configs(preset))


def run_name(tower: str, seed_index: int) -> str:
    """The LLaVA run of `tower` with the i-th LLaVA seed: `clips`, `clips-seed1`, ..."""
    return tower if seed_index == 0 else f"{tower}-seed{seed_index}"


def llava_runs(preset: DemoPreset, seeds: int) -> list[tuple[str, str, int]]:
    """(run name, tower, seed index) of every LLaVA the demo trains."""
    return [(run_name(t, k), t, k) for k in range(seeds) for t in tower_names(preset)]


def llava_dir(rel: str) -> list[str]:
    """A stage-2 step's outputs: the saved Llava dir's config and weights (relative to OUT)."""
    return [f"{rel}/config.json", f"{rel}/model.safetensors"]


def build_steps(preset: DemoPreset, out: Path, seed: int, seeds: int = 1) -> list[Step]:
    """The demo as data: one `Step` per subcommand, paths under `out`.

    Towers are pretrained once (seed `seed`); the LLaVA stages repeat per tower for `seeds` seeds
    (`seed`, `seed + 1`, ...). Every LLaVA is evaluated; the first seed's also blind (`<run>-blind`).
    """
    cli = [sys.executable, "-m", "llava_train.pipeline.cli"]
    world = out / "world"
    steps = [Step("world", cli + ["synth", "--out", str(world), "--preset", preset.world,
                                  "--seed", str(seed), "--overwrite"], ["world/MANIFEST.json"], after=())]
    for name, cfg in tower_configs(preset).items():
        run = out / "towers" / name
        argv = cli + ["clips", "train", "--config", str(REPO / cfg), "--data", str(world),
                      "--out", str(run), "--seed", str(seed)]
        if name == RANDOM_TOWER:
            argv += ["--steps", "0"]  # same architecture, never trained
        elif preset.clips_steps is not None:
            argv += ["--steps", str(preset.clips_steps)]
        steps.append(Step(f"tower-{name}", argv, [f"towers/{name}/export"], after=("world",)))
        steps.append(Step(f"retrieval-{name}", cli + [
            "clips", "eval", "--model", str(run / "export"), "--data", str(world),
            "--out", str(run / "retrieval.json")], [f"towers/{name}/retrieval.json"], after=(f"tower-{name}",)))
        steps.append(Step(f"export-{name}", cli + [
            "tower", "export", "--model", str(run / "export"), "--out", str(out / "hf-towers" / name),
            "--overwrite", "--check"], [f"hf-towers/{name}"], after=(f"tower-{name}",)))
    steps.append(Step("lm-init", cli + ["lm", "init", "--preset", preset.lm_preset, "--data", str(world),
                                        "--out", str(out / "lm-init"), "--seed", str(seed)], ["lm-init"],
                      after=("world",)))
    lm_from, lm_data = out / "lm-init", [str(world)]
    if preset.lm_lookup_steps:
        steps.append(Step("lm-lookup", cli + [
            "lm", "pretrain", "--model", str(lm_from), "--data", str(world / "lookup.txt"), "--out",
            str(out / "lm-lookup"), "--steps", str(preset.lm_lookup_steps), "--lr", str(preset.lm_lr),
            "--seed", str(seed)], ["lm-lookup"]))
        lm_from, lm_data = out / "lm-lookup", [str(world / "corpus.txt"), str(world / "lookup.txt")]
    steps.append(Step("lm-pretrain", cli + ["lm", "pretrain", "--model", str(lm_from), "--data", *lm_data,
                                            "--out", str(out / "lm"), "--steps", str(preset.lm_steps),
                                            "--lr", str(preset.lm_lr), "--seed", str(seed)], ["lm"]))
    ds_env = {"NPROC": "1", "DS_ACCELERATOR": "cpu"}
    runs = llava_runs(preset, seeds)
    for name, tower, k in runs:
        s1, s2 = out / "llava" / name / "stage1", out / "llava" / name / "stage2"
        lm_tower = ["--model_name_or_path", str(out / "lm"), "--vision_tower", str(out / "hf-towers" / tower)]
        common = ["--image_folder", str(world / "llava" / "images"), "--seed", str(seed + k)]
        steps.append(Step(f"stage1-{name}", ["bash", str(REPO / "scripts" / "pretrain_projector.sh"),
                                             "--config", str(REPO / preset.stage1), *lm_tower, *common,
                                             "--data_path", str(world / "llava" / "stage1.json"),
                                             "--output_dir", str(s1), *preset.stage_overrides.get("stage1", [])],
                          [f"llava/{name}/stage1"], env=ds_env, after=("lm-pretrain", f"export-{tower}")))
        finetune = ["bash", str(REPO / "scripts" / "finetune.sh"), "--config", str(REPO / preset.stage2), *common]
        s2_init, s2_after = [*lm_tower, "--pretrain_mm_mlp_adapter", str(s1)], f"stage1-{name}"
        if preset.existence_steps:  # stage 2's own recipe, first on the existence conversations alone
            s2e = out / "llava" / name / EXISTENCE_PHASE
            steps.append(Step(f"{EXISTENCE_PHASE}-{name}", finetune + [
                *s2_init, "--data_path", str(world / "llava" / EXISTENCE_FILE), "--output_dir", str(s2e),
                *preset.stage_overrides.get("stage2", []), "--max_steps", str(preset.existence_steps)],
                llava_dir(f"llava/{name}/{EXISTENCE_PHASE}"), env=ds_env, after=(s2_after,)))
            # then the full mix from that LLaVA dir (tower and projector included)
            s2_init, s2_after = ["--model_name_or_path", str(s2e)], f"{EXISTENCE_PHASE}-{name}"
        steps.append(Step(f"stage2-{name}", finetune + [
            *s2_init, "--data_path", str(world / "llava" / "stage2.json"), "--output_dir", str(s2),
            *preset.stage_overrides.get("stage2", [])],
            llava_dir(f"llava/{name}/stage2"), env=ds_env, after=(s2_after,)))
    evals = [(name, name, False) for name, _, _ in runs] + [
        (f"{name}-blind", name, True) for name, tower, k in runs
        if k == 0 and (preset.blind is None or tower in preset.blind)]
    for label, name, blind in evals:
        argv = cli + ["eval", "run", "--model", str(out / "llava" / name / "stage2"), "--suite", "local",
                      "--data", str(world), "--out", str(out / "eval" / label), "--device", "cpu",
                      "--batch-size", "16"]
        if blind:
            argv.append("--blind")
        if preset.eval_limit is not None:
            argv += ["--limit", str(preset.eval_limit)]
        steps.append(Step(f"eval-{label}", argv, [f"eval/{label}"], after=(f"stage2-{name}",)))
    report_argv = cli + ["eval", "report", "--baseline", BASELINE, "--out", str(out / "report")]
    for label, _, _ in evals:
        report_argv += ["--run", f"{label}={out / 'eval' / label}"]
    steps.append(Step("report", report_argv, ["report/report.md", "report/report.json", "report/gains.png"],
                      after=tuple(f"eval-{label}" for label, _, _ in evals)))
    curves_argv = [sys.executable, "-m", "llava_train.pipeline.curves", "--out", str(out / "report" / "curves.png")]
    for name, _, _ in runs:
        curves_argv += ["--run", f"{name}={out / 'llava' / name}"]
    steps.append(Step("curves", curves_argv, ["report/curves.png"],
                      after=tuple(f"stage2-{name}" for name, _, _ in runs)))
    return steps


def _retrieval_table(out: Path, towers: list[str]) -> str:
    lines = ["| tower | I→T R@1 | T→I R@1 | I→T R@5 |", "|---|---|---|---|"]
    for name in towers:
        path = out / "towers" / name / "retrieval.json"
        m = json.loads(path.read_text()) if path.exists() else {}
        fmt = lambda v: f"{v:.1f}" if isinstance(v, (int, float)) else "?"  # noqa: E731
        lines.append(f"| {name} | {fmt(m.get('i2t_R@1'))} | {fmt(m.get('t2i_R@1'))} | {fmt(m.get('i2t_R@5'))} |")
    return "\n".join(lines)


def seeds_table(report: dict, preset: DemoPreset, seeds: int) -> str:
    """Per benchmark and tower: mean and spread (min–max) of the score over the LLaVA seeds."""
    towers = tower_names(preset)
    lines = ["| benchmark | metric | " + " | ".join(f"{t} mean [min, max]" for t in towers) + " |",
             "|---|---|" + "---|" * len(towers)]
    for row in report.get("rows", []):
        cells = []
        for t in towers:
            vals = [row["scores"].get(run_name(t, k)) for k in range(seeds)]
            vals = [v for v in vals if isinstance(v, (int, float))]
            cells.append(f"{sum(vals) / len(vals):.4g} [{min(vals):.4g}, {max(vals):.4g}]" if vals else "n/a")
        lines.append(f"| {row['benchmark']} | {row['metric']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_summary(out: Path, preset_name: str, preset: DemoPreset, seed: int, times: dict[str, float],
                  wall: float, seeds: int = 1) -> str:
    towers = tower_names(preset)
    report_md = (out / "report" / "report.md").read_text() if (out / "report" / "report.md").exists() else ""
    report_md = report_md.replace("](gains.png)", "](report/gains.png)")
    step_rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in times.items())
    chat_model = out / "llava" / "clips" / "stage2"
    image = next(iter(sorted((out / "world" / "eval" / "images").glob("*.png"))), None)
    chat = f"clips-llava chat --model {chat_model}" + (f" --image {image}" if image else "")
    seeds_md = ""
    if seeds > 1 and (out / "report" / "report.json").exists():
        report = json.loads((out / "report" / "report.json").read_text())
        seeds_md = (f"## Across {seeds} LLaVA seeds ({seed}..{seed + seeds - 1}; towers and LM fixed)\n\n"
                    f"{seeds_table(report, preset, seeds)}\n\n")
    text = (f"# clips-llava demo summary\n\npreset `{preset_name}`, seed {seed}, LLaVA seeds {seeds}, "
            f"{date.today().isoformat()}, total wall time {wall:.1f} s (this run; skipped steps show their "
            f"recorded time)\n\n"
            f"## Step times (s)\n\n| step | seconds |\n|---|---|\n{step_rows}\n\n"
            f"## Tower retrieval (synthetic world, held-out split, COCO-like queries)\n\n"
            f"{_retrieval_table(out, towers)}\n\n"
            f"## LLaVA gains over `{BASELINE}`\n\n{report_md}\n\n{seeds_md}"
            f"## Training curves\n\n![curves](report/curves.png)\n\n"
            f"## Chat with the CLIPS LLaVA\n\n    {chat}\n")
    atomic_write(out / "summary.md", text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="clips-llava demo", description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  clips-llava demo --out runs/demo\n  clips-llava demo --out runs/demo-tiny --preset tiny\n"
               "  clips-llava demo --out runs/demo-2seeds --seeds 2")
    parser.add_argument("--out", required=True, type=Path, help="run directory (world, towers, models, eval, report)")
    parser.add_argument("--preset", default="demo",
                        help=f"one of: {', '.join(DEMO_PRESETS)}, or {', '.join(ablation.ABLATION_PRESETS)} (the text-reduction "
                             "ablation of the towers, see llava_train/ablation.py)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=None,
                        help="LLaVA seeds per tower (stages 1+2 and eval repeated; the report gives mean and spread); "
                             "default 1. For an ablation preset: tower seeds per variant (default: the preset's, 2)")
    parser.add_argument("--jobs", type=int, default=3,
                        help="steps run side by side where their inputs allow (default 3: e.g. the three towers' "
                             "LLaVA stages), sharing the cores; 1 runs them one after another")
    parser.add_argument("--fresh", action="store_true", help="ignore the manifest and redo every step")
    parser.add_argument("--verbose", action="store_true",
                        help="echo every step's output (it is always in OUT/logs/; with --jobs > 1, only there)")
    parser.add_argument("--quiet", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old scripts
    args = parser.parse_args(argv)
    ablation_run = args.preset in ablation.ABLATION_PRESETS
    try:
        preset = ablation.ABLATION_PRESETS[args.preset] if ablation_run else get_preset(args.preset)
        if args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
        if args.seeds is not None and args.seeds < 1:
            raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {args.out}: is a file, not a directory")
    except ValueError as e:
        print(f"clips-llava demo: error: {e}", file=sys.stderr)
        return 2
    out = args.out.resolve()
    if ablation_run:  # --seeds: tower seeds per variant (default: the preset's)
        preset = preset if args.seeds is None else dataclasses.replace(preset, seeds=args.seeds)
        steps = ablation.build_steps(preset, out, args.seed)
    else:  # --seeds: LLaVA seeds per tower (default 1)
        args.seeds = args.seeds or 1
        steps = build_steps(preset, out, args.seed, args.seeds)
    t0 = time.perf_counter()
    try:
        times = run_steps(steps, out, fresh=args.fresh, echo=args.verbose and not args.quiet, jobs=args.jobs)
    except StepFailed as e:
        print(f"clips-llava demo: {e}. Fix it and re-run the same command to resume from that step.",
              file=sys.stderr)
        return 1
    if ablation_run:
        print((out / "ablation" / "ablation.md").read_text())
    else:
        print(write_summary(out, args.preset, preset, args.seed, times, time.perf_counter() - t0, args.seeds))
    return 0

if __name__ == "__main__":
    sys.exit(main())
