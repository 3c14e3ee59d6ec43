"""OUTPUT_DIR/init is reused only when its inputs are unchanged (a retrained tower or LM in the same
output directory must never train on a stale initial model)."""
from __future__ import annotations

import os
from types import SimpleNamespace

from llava_train.run import _inputs_fingerprint


def _args(tmp_path):
    tower, lm = tmp_path / "tower", tmp_path / "lm"
    for d in (tower, lm):
        d.mkdir()
        (d / "model.safetensors").write_bytes(b"weights")
    margs = SimpleNamespace(model_name_or_path=str(lm), vision_tower=str(tower), pretrain_mm_mlp_adapter=None,
                            mm_projector_type="mlp2x_gelu")
    return margs, SimpleNamespace(template="plain", image_aspect_ratio="native"), SimpleNamespace(seed=0), tower


def test_fingerprint_is_stable_and_sees_a_retrained_tower(tmp_path):
    margs, dargs, targs, tower = _args(tmp_path)
    first = _inputs_fingerprint(margs, dargs, targs)
    assert _inputs_fingerprint(margs, dargs, targs) == first
    weights = tower / "model.safetensors"
    weights.write_bytes(b"retrained weights")
    os.utime(weights, ns=(1, 1))
    assert _inputs_fingerprint(margs, dargs, targs) != first
    targs.seed = 1
    assert _inputs_fingerprint(margs, dargs, targs)["seed"] == 1
