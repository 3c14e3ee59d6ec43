"""The per-cell linear probe of a tower's LLaVA features (clips_tower/probe.py) on a tiny tower."""
from __future__ import annotations

import json

from clips_tower.adapter.cli import main as tower_main
from clips_tower.probe import cell_labels, main as probe_main
from clips_tower.world.scene import sample_scene
from tests.tower_helpers import TINY_JSON

import numpy as np


def test_cell_labels_follow_the_grid():
    scene = sample_scene(np.random.default_rng(3), 2, 2)
    labels = cell_labels([scene], "shape")[0].tolist()
    occupied = {o.row * 3 + o.col for o in scene.objects}
    assert sum(v != 6 for v in labels) == 2 and {i for i, v in enumerate(labels) if v != 6} == occupied


def test_probe_reads_colour_from_a_random_tower_and_the_shuffled_control_does_not(tmp_path, capsys):
    tower = tmp_path / "tower"
    assert tower_main(["export", "--model", str(TINY_JSON), "--random-init", "--out", str(tower)]) == 0
    out = tmp_path / "probe.json"
    assert probe_main(["--model", str(tower), "--scenes", "300", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    colour = result["color"]
    # a random patch embedding is a linear map of the pixels: colour stays linearly readable ...
    assert colour["occupied"] > colour["chance_occupied"] + 0.2
    # ... and a classifier fitted to other images' labels cannot read it
    assert colour["occupied"] > colour["shuffled_occupied"] + 0.3
    assert set(result) == {"color", "shape"}
    assert "| color |" in capsys.readouterr().out
