"""The per-cell linear probe of a tower's LLaVA features (clips_tower/probe.py) on a tiny tower."""
from __future__ import annotations

import json

import numpy as np
import torch

from clips_tower.adapter.cli import main as tower_main
from clips_tower.probe import cell_labels
from clips_tower.probe import main as probe_main
from clips_tower.world.scene import sample_scene
from tests.tower_helpers import TINY_JSON


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


def test_mlp_head_reads_colour_and_unknown_heads_are_refused(tmp_path):
    import pytest

    from clips_tower.probe import fit_head, probe

    tower = tmp_path / "tower"
    assert tower_main(["export", "--model", str(TINY_JSON), "--random-init", "--out", str(tower)]) == 0
    colour = probe(str(tower), images=200, head="mlp")["color"]
    assert colour["occupied"] > colour["chance_occupied"] + 0.2
    assert colour["occupied"] > colour["shuffled_occupied"] + 0.3
    # the hidden layer can fit what a linear head cannot: XOR of two inputs
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]).repeat(8, 1)
    y = (x[:, 0] != x[:, 1]).long()
    mlp, linear = fit_head(x, y, 2, "mlp"), fit_head(x, y, 2, "linear")
    with torch.no_grad():
        assert (mlp(x).argmax(-1) == y).all()
        assert not (linear(x).argmax(-1) == y).all()
    with pytest.raises(ValueError, match="known: linear, mlp"):
        fit_head(x, y, 2, "deep")


def test_pixel_probe_reads_colour_linearly_and_shape_only_through_a_hidden_layer():
    """The input's own baseline (`--pixels`): a cell's pixels hold its colour linearly, its shape only as
    colour x mask, which a linear head cannot read across colours and one hidden layer can."""
    from clips_tower.probe import probe

    linear = probe(None, images=300, image_size=32)
    assert linear["color"]["occupied"] > 0.9
    assert linear["shape"]["occupied"] < 0.35  # chance is 1/6
    mlp = probe(None, images=300, image_size=32, head="mlp")["shape"]
    assert mlp["occupied"] > linear["shape"]["occupied"] + 0.4
    assert mlp["occupied"] > mlp["shuffled_occupied"] + 0.4


def test_pixels_and_model_are_exclusive_and_pixels_need_a_size(capsys):
    import pytest

    for argv in (["--pixels"], ["--pixels", "--model", "T", "--image-size", "32"], []):
        with pytest.raises(SystemExit) as e:
            probe_main(argv)
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--pixels needs --image-size" in err and "not allowed with argument" in err
