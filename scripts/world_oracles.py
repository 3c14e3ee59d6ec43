"""Attribute-only oracles on a synthetic world's POPE split: the score of a model that reads one attribute.

A POPE question asks "Is there a <colour> <shape> in the image?". This script answers every question
of the world's `eval/pope.jsonl` from the ground-truth scene, but seeing only part of it:

  colour-only   yes iff some object has the asked colour
  shape-only    yes iff some object has the asked shape
  colour+shape  yes iff the colour and the shape are both present (not necessarily on one object)
  full          yes iff the asked object is present (1.0 by construction: checks the re-draw)

It tells what reading an attribute is worth before any model is trained: if the colour-only oracle
is far above a LLaVA's POPE score while that LLaVA names colours in its captions, the LLaVA does not
use what it sees to answer yes/no questions.

    python scripts/world_oracles.py runs/demo/world

The scenes are drawn again from the world's MANIFEST (preset, its sizes and seed; generation is a
function of these only), and every question is checked against the world's own file first.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

from clips_tower.world import generate
from clips_tower.world.presets import get_preset

ORACLES = {
    "colour-only": lambda scene, colour, shape: colour in {o.color for o in scene.objects},
    "shape-only": lambda scene, colour, shape: shape in {o.shape for o in scene.objects},
    "colour+shape": lambda scene, colour, shape: (colour in {o.color for o in scene.objects}
                                                  and shape in {o.shape for o in scene.objects}),
    "full": lambda scene, colour, shape: f"{colour} {shape}" in scene.names,
}


def pope_scenes(world: Path) -> tuple[list, list[dict]]:
    """(the held-out POPE scenes, the POPE records) of the world at `world`, re-drawn from its MANIFEST."""
    manifest = json.loads((world / "MANIFEST.json").read_text())
    config = {k: v for k, v in manifest["preset_config"].items() if k != "name"}
    preset, seed = get_preset(manifest["preset"], **config), int(manifest["seed"])
    drawn = generate._draw(preset, seed)
    rendered = generate._render(drawn, preset.image_size, workers=1)
    generate._hold_out(drawn, rendered, preset, seed)  # the same resampling the generator did
    records = generate._eval_records(drawn, seed)["pope"]
    on_disk = [json.loads(line) for line in (world / "eval" / "pope.jsonl").read_text().splitlines() if line]
    if records != on_disk:
        raise SystemExit(f"error: re-drawn POPE questions differ from {world}/eval/pope.jsonl "
                         "(another generator version?)")
    return drawn.eval_items["pope"], records


def oracle_scores(scenes: list, records: list[dict]) -> dict[str, dict[str, float]]:
    """oracle -> POPE category (and "all") -> accuracy."""
    hits: dict[tuple[str, str], list[int]] = collections.defaultdict(lambda: [0, 0])
    for r in records:
        scene = scenes[int(Path(r["image"]).stem.rsplit("_", 1)[1])]
        colour, shape = r["object"].split(" ", 1)
        for name, oracle in ORACLES.items():
            right = ("yes" if oracle(scene, colour, shape) else "no") == r["answer"]
            for cat in (r["category"], "all"):
                hits[(name, cat)][0] += right
                hits[(name, cat)][1] += 1
    out: dict[str, dict[str, float]] = {}
    for (name, cat), (k, n) in hits.items():
        out.setdefault(name, {})[cat] = k / n
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("world", type=Path, help="a world dir written by `clips-llava synth`")
    args = parser.parse_args(argv)
    scenes, records = pope_scenes(args.world)
    scores = oracle_scores(scenes, records)
    cats = ["random", "popular", "adversarial", "all"]
    print(f"POPE attribute-only oracles, {len(records)} questions of {args.world}")
    print("| oracle | " + " | ".join(cats) + " |\n|---|" + "---|" * len(cats))
    for name in ORACLES:
        print(f"| {name} | " + " | ".join(f"{scores[name][c]:.3f}" for c in cats) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
