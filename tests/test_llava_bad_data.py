"""Bad samples found during LLaVA training: replaced and counted, resume-exact, and the bad-fraction stop.

    pytest -q tests/test_llava_bad_data.py
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.llava_helpers import REPO, make_lm, make_tower, offline_env, torchrun, write_json

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def setup(tiny_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("llava_bad")
    images = tmp / "images"
    shutil.copytree(tiny_world / "llava/images", images)
    good = [r for r in json.loads((tiny_world / "llava/stage1.json").read_text())][:12]
    (images / "corrupt.png").write_bytes((images / good[0]["image"]).read_bytes()[:50])  # truncated PNG
    bad = [{**good[1], "id": "planted-missing", "image": "gone/none.png"},
           {**good[2], "id": "planted-corrupt", "image": "corrupt.png"}]
    data = write_json(tmp / "stage1.json", good[:6] + bad[:1] + good[6:] + bad[1:])
    return {"tmp": tmp, "images": images, "data": data, "tower": make_tower(tmp / "tower"),
            "lm": make_lm(tiny_world, tmp / "lm")}


def _args(s, out, *extra):
    return ["--config", str(REPO / "configs/llava/stage1_tiny.yaml"), "--model_name_or_path", str(s["lm"]),
            "--vision_tower", str(s["tower"]), "--data_path", str(s["data"]), "--image_folder", str(s["images"]),
            "--output_dir", str(out), "--max_steps", "4", "--max_bad_sample_fraction", "0.5",
            "--bad_sample_min_seen", "1", *extra]


def _report(out):
    return json.loads((out / "run_report.json").read_text())


@pytest.mark.parametrize("feature_cache", ["false", "true"])
def test_planted_bad_images_are_replaced_counted_and_resume_exactly(setup, feature_cache):
    tag = f"fc-{feature_cache}"
    ref_out = setup["tmp"] / f"{tag}-ref"
    torchrun(1, _args(setup, ref_out, "--feature_cache", feature_cache))
    ref = _report(ref_out)
    during = ref["bad_samples"]["during_training"]
    assert during["counts"].get("missing_image", 0) >= 1 and during["counts"].get("corrupt_image", 0) >= 1, during
    assert "planted-missing" in during["first_ids"]["missing_image"]
    assert "planted-corrupt" in during["first_ids"]["corrupt_image"]
    # 4 steps of 4 = one epoch of the 14 usable records (the last batch holds 2), plus the replaced draws
    assert ref["usable_records"] == 14 and ref["bad_samples"]["seen_during_training"] == 14 + during["total"]
    if feature_cache == "true":
        return  # the feature cache only changes where the bad image is found; resume is checked once, below
    # interrupted after step 2 (checkpoint), resumed: same losses, same counts
    out = setup["tmp"] / f"{tag}-resume"
    base = _args(setup, out, "--feature_cache", feature_cache, "--save_strategy", "steps", "--save_steps", "2")
    torchrun(1, base + ["--interrupt_after_steps", "2"])
    torchrun(1, base + ["--resume_from_checkpoint", "true"])
    got = _report(out)
    resumed, reference = dict(map(tuple, got["losses"])), dict(map(tuple, ref["losses"]))
    assert set(resumed) == {1, 2, 3, 4} and all(abs(resumed[k] - reference[k]) < 1e-4 for k in resumed)
    assert got["bad_samples"]["during_training"]["counts"] == during["counts"]
    assert got["bad_samples"]["seen_during_training"] == ref["bad_samples"]["seen_during_training"]


def test_bad_fraction_stops_with_one_clear_line(setup):
    out = setup["tmp"] / "strict"
    cmd = [sys.executable, "-m", "llava_train.train", *_args(setup, out, "--max_bad_sample_fraction", "0.01",
                                                              "--bad_sample_min_seen", "4", "--feature_cache", "false")]
    r = subprocess.run(cmd, cwd=REPO, env=offline_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-3000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("clips-llava llava train: error:") and "max_bad_sample_fraction=0.01" in last
    assert "missing_image" in last or "corrupt_image" in last
    assert "Traceback" not in r.stderr
