"""`scripts/world_oracles.py`: attribute-only POPE oracles re-drawn from a world's MANIFEST."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.llava_helpers import import_script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "world_oracles.py"


def _run(world: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(world)], capture_output=True, text=True, check=False)


def test_oracles_redraw_the_world_and_score_by_the_asked_attribute(tiny_world):
    world_oracles = import_script("world_oracles")
    scenes, records = world_oracles.pope_scenes(tiny_world)
    scores = world_oracles.oracle_scores(scenes, records)
    assert scores["full"]["all"] == 1.0  # the re-drawn scenes are the world's: every answer follows from them
    # hand-count the colour-only oracle from the scenes' objects
    right = sum((r["object"].split(" ")[0] in {o.color for o in scenes[int(r["image"][-10:-4])].objects})
                == (r["answer"] == "yes") for r in records)
    assert scores["colour-only"]["all"] == right / len(records)
    # a positive is always right for the partial oracles (its colour and its shape are present)
    assert all(0.5 <= scores[name]["all"] <= 1.0 for name in ("colour-only", "shape-only", "colour+shape"))
    r = _run(tiny_world)
    assert r.returncode == 0, r.stderr
    assert "| colour-only |" in r.stdout and "| full | 1.000 |" in r.stdout


def test_oracles_refuse_a_world_whose_questions_differ(tiny_world, tmp_path):
    import shutil
    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    lines = (world / "eval" / "pope.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["answer"] = "no" if first["answer"] == "yes" else "yes"
    (world / "eval" / "pope.jsonl").write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
    r = _run(world)
    assert r.returncode != 0 and "differ" in r.stderr
