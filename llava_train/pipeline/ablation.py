"""The text-reduction ablation (`clips-llava demo --preset ablation`): which partial caption the
CLIPS text encoder should see, measured as retrieval R@1 on the held-out split (COCO-like queries).

    clips-llava demo --preset ablation --out runs/ablation          # demo world, 2 seeds
    clips-llava demo --preset ablation-tiny --out runs/ablation-tiny  # tiny world; what the test runs

It trains the CLIPS tower (both contrastive views, no captioner) once per variant and seed, all with
the same architecture, data, optimiser and step budget: `full`, `truncation`, `random`, `block` and `subcaption` at K = 32, and
`subcaption` at K in {16, 32, 64} (the CLIPS paper's token-reduction comparison), then writes
`OUT/ablation/ablation.md` (mean and spread over seeds), `ablation.json` and `ablation.png`
(R@1 per strategy at K = 32, and R@1 against K for sub-caption). Steps resume like the demo's.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clips_tower.io import CHECKOUT, atomic_write, save_figure
from llava_train.pipeline.steps import Step

REPO = CHECKOUT  # configs/ and scripts/ come from the checkout
STRATEGY_K = 32
VARIANTS: list[tuple[str, int]] = [("full", STRATEGY_K), ("truncation", STRATEGY_K), ("random", STRATEGY_K),
                                   ("block", STRATEGY_K), ("subcaption", 16), ("subcaption", STRATEGY_K),
                                   ("subcaption", 64)]
METRICS = ("i2t_R@1", "t2i_R@1")


@dataclass(frozen=True)
class AblationPreset:
    world: str
    config: str        # the CLIPS run config every variant starts from (relative to the repo)
    steps: int | None = None  # None: the config's own budget (optim.steps)
    seeds: int = 2


ABLATION_PRESETS = {
    # both contrastive views, no captioner: the text encoder's input is the only thing that varies, and the
    # 14 runs take about 30 min on 2 CPU cores instead of 1.5 h with the captioner
    "ablation": AblationPreset(world="demo", config="configs/clips/clips-no-captioner.yaml"),
    "ablation-tiny": AblationPreset(world="tiny", config="configs/clips/tiny.yaml", steps=4),
}


def variant_name(strategy: str, k: int, seed: int) -> str:
    return f"{strategy}-k{k}-seed{seed}"


def build_steps(preset: AblationPreset, out: Path, seed: int) -> list[Step]:
    cli = [sys.executable, "-m", "llava_train.pipeline.cli"]
    world = out / "world"
    budget = [] if preset.steps is None else ["--steps", str(preset.steps)]
    steps = [Step("world", cli + ["synth", "--out", str(world), "--preset", preset.world, "--seed", str(seed),
                                  "--overwrite"], ["world/MANIFEST.json"])]
    table = [sys.executable, "-m", "llava_train.pipeline.ablation", "table", "--out", str(out / "ablation")]
    for s in range(seed, seed + preset.seeds):
        for strategy, k in VARIANTS:
            name = variant_name(strategy, k, s)
            run = out / "towers" / name
            # one process per variant: `clips train` then `clips eval` (the same mains the CLI runs)
            steps.append(Step(f"tower-{name}", [
                sys.executable, "-m", "llava_train.pipeline.ablation", "variant", "--config", str(REPO / preset.config),
                "--data", str(world), "--out", str(run), "--seed", str(s), *budget,
                "--strategy", strategy, "--k", str(k)], [f"towers/{name}/export", f"towers/{name}/retrieval.json"]))
            table += ["--run", f"{strategy}:{k}:{s}={run / 'retrieval.json'}"]
    steps.append(Step("table", table, ["ablation/ablation.md", "ablation/ablation.json", "ablation/ablation.png"]))
    return steps


def summarise(runs: dict[tuple[str, int, int], dict]) -> list[dict]:
    """One row per (strategy, K): mean, min and max over seeds of each retrieval metric."""
    rows = []
    for strategy, k in VARIANTS:
        found = [m for (st, kk, _), m in sorted(runs.items()) if (st, kk) == (strategy, k)]
        if not found:
            continue
        row = {"strategy": strategy, "k": k, "seeds": len(found)}
        for metric in METRICS:
            vals = [float(m[metric]) for m in found]
            row[metric] = {"mean": float(np.mean(vals)), "min": min(vals), "max": max(vals), "values": vals}
        rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| strategy | K | seeds | I→T R@1 mean [min, max] | T→I R@1 mean [min, max] |", "|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[m]['mean']:.1f} [{r[m]['min']:.1f}, {r[m]['max']:.1f}]" for m in METRICS]
        lines.append(f"| {r['strategy']} | {'all' if r['strategy'] == 'full' else r['k']} | {r['seeds']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    at_k = [r for r in rows if r["k"] == STRATEGY_K]
    x = np.arange(len(at_k))
    for j, metric in enumerate(METRICS):
        means = [r[metric]["mean"] for r in at_k]
        err = [[r[metric]["mean"] - r[metric]["min"] for r in at_k], [r[metric]["max"] - r[metric]["mean"] for r in at_k]]
        a.bar(x + (j - 0.5) * 0.38, means, 0.38, yerr=err, capsize=3, label=metric)
    a.set_xticks(x, [r["strategy"] for r in at_k])
    a.set_ylabel("R@1 (%)")
    a.set_title(f"text reduction at K = {STRATEGY_K} (bars: min–max over seeds)")
    a.legend(fontsize=8)
    sub = sorted((r for r in rows if r["strategy"] == "subcaption"), key=lambda r: r["k"])
    for metric in METRICS:
        b.errorbar([r["k"] for r in sub], [r[metric]["mean"] for r in sub],
                   yerr=[[r[metric]["mean"] - r[metric]["min"] for r in sub],
                         [r[metric]["max"] - r[metric]["mean"] for r in sub]], marker="o", capsize=3, label=metric)
    b.set_xscale("log", base=2)
    b.set_xlabel("K (text tokens kept)")
    b.set_ylabel("R@1 (%)")
    b.set_title("sub-caption: R@1 against K")
    b.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def write_table(runs: dict[tuple[str, int, int], dict], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    rows = summarise(runs)
    md = markdown(rows)
    intro = ("# Text-reduction ablation\n\nRetrieval R@1 (%) of CLIPS towers that differ only in the partial "
             "synthetic caption their text encoder sees; held-out images, COCO-like queries; same budget for every "
             "variant.\n\n")
    for name, text in (("ablation.md", intro + md + "\n\n![ablation](ablation.png)\n"),
                       ("ablation.json", json.dumps({"rows": rows}, indent=2))):
        atomic_write(out / name, text)
    plot(rows, out / "ablation.png")
    return md


def train_variant(args) -> int:
    """Train one variant's tower and measure its retrieval (`clips train` + `clips eval`, in one process)."""
    from clips_tower import retrieval, train

    budget = [] if args.steps is None else ["--steps", str(args.steps)]
    rc = train.main(["--config", args.config, "--data", args.data, "--out", args.out, "--seed", str(args.seed),
                     *budget, "--set", f"method.strategy={args.strategy}", "--set", f"method.k={args.k}"])
    if rc:
        return rc
    return retrieval.main(["--model", str(Path(args.out) / "export"), "--data", args.data,
                           "--out", str(Path(args.out) / "retrieval.json")])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m llava_train.pipeline.ablation", description="the ablation's steps")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("variant", help="train one variant's tower and measure its retrieval")
    for flag in ("--config", "--data", "--out", "--strategy"):
        v.add_argument(flag, required=True)
    for flag in ("--seed", "--k"):
        v.add_argument(flag, type=int, required=True)
    v.add_argument("--steps", type=int, help="override the config's optim.steps")
    t = sub.add_parser("table", help="write the ablation table + chart")
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--run", action="append", required=True, metavar="STRATEGY:K:SEED=RETRIEVAL_JSON")
    args = p.parse_args(argv)
    if args.cmd == "variant":
        return train_variant(args)
    runs = {}
    for spec in args.run:
        key, _, path = spec.partition("=")
        strategy, k, seed = key.split(":")
        runs[(strategy, int(k), int(seed))] = json.loads(Path(path).read_text())
    print(write_table(runs, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
