"""Crash safety of training runs: `kill -9` anywhere, then `--resume_from_checkpoint true`, gives the
uninterrupted result (llava_train.checkpoints, scripts/soak_kill.py).

    pytest -q tests/test_kill_resume.py

- incomplete `checkpoint-N` dirs (empty, missing trainer_state.json) and a leftover staging dir
  next to a complete checkpoint: the resume takes the complete one with a warning, reproduces
  the uninterrupted losses and weights, and `save_total_limit` keeps the complete one;
- the soak script (real SIGKILLs at seeded random moments) on LLaVA stage 2 and on CLIPS;
- the final model directory under a crash at every filesystem step of its publication, and
  under a failing `save_model`: the old model stays intact or is absent, never mixed with the new.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from llava_train import checkpoints as ck
from tests.llava_helpers import REPO, make_lm, make_tower, offline_env

SOAK = [sys.executable, str(REPO / "scripts/soak_kill.py")]
STEPS = ["--steps", "6", "--save-steps", "2", "--save-total-limit", "2"]


@pytest.fixture(scope="module")
def inputs(tiny_world, tmp_path_factory):
    """The soak script's input layout (world, tower, lm) built with the test helpers."""
    root = tmp_path_factory.mktemp("kill_inputs")
    (root / "world").symlink_to(tiny_world)
    make_tower(root / "tower")
    (root / "lm").symlink_to(make_lm(tiny_world, root / "lm-build"))
    return root


def _start_soak(out: Path, inputs: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([*SOAK, "--out", str(out), "--inputs", str(inputs), *args], cwd=REPO, env=offline_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish_soak(proc: subprocess.Popen, out: Path) -> tuple[int, str, dict]:
    try:
        text, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        text, _ = proc.communicate()
    report = json.loads((out / "soak_report.json").read_text()) if (out / "soak_report.json").is_file() else {}
    return proc.returncode, text, report


@pytest.fixture(scope="module")
def soaks(inputs, tmp_path_factory):
    """Both soaks at once (each runs one training process at a time: two processes for two cores)."""
    outs = {"llava-stage2": tmp_path_factory.mktemp("soak_stage2"), "clips": tmp_path_factory.mktemp("soak_clips")}
    procs = {"llava-stage2": _start_soak(outs["llava-stage2"], inputs, "--target", "llava-stage2", "--kills", "2",
                                         "--seed", "0", *STEPS),
             "clips": _start_soak(outs["clips"], inputs, "--target", "clips", "--kills", "2", "--seed", "1",
                                  "--steps", "4")}
    return {t: (outs[t], *_finish_soak(procs[t], outs[t])) for t in procs}


@pytest.mark.slow
def test_soak_llava_stage2_matches_uninterrupted(soaks):
    out, rc, text, report = soaks["llava-stage2"]
    assert rc == 0, text[-6000:]
    assert report["kills"] == 2 and report["steps"] == 6 and not report["problems"]
    assert report["max_loss_diff"] <= 1e-6 and report["max_weight_diff"] <= 1e-6
    assert "soak_kill: target=llava-stage2 K=2" in text and "| OK" in text
    assert ck.checkpoint_problem(out / "soak/checkpoint-6") is None


@pytest.mark.slow
def test_soak_clips_matches_uninterrupted(soaks):
    _, rc, text, report = soaks["clips"]
    assert rc == 0, text[-6000:]
    assert report["kills"] == 2 and report["steps"] == 4 and not report["problems"]
    assert report["max_loss_diff"] == 0 and report["max_weight_diff"] == 0


@pytest.mark.slow
def test_resume_skips_incomplete_checkpoints_and_keeps_the_complete_one(soaks, inputs, tmp_path):
    from safetensors.torch import load_file

    ref = soaks["llava-stage2"][0] / "reference"  # the soak's uninterrupted run: checkpoint-4, checkpoint-6, final
    assert (ref / "run_report.json").is_file(), soaks["llava-stage2"][2][-3000:]
    out = tmp_path / "run"
    out.mkdir()
    shutil.copytree(ref / "checkpoint-4", out / "checkpoint-4")
    shutil.copytree(ref / "init", out / "init")
    (out / "checkpoint-6").mkdir()  # killed as it was created (stock HF's in-place save)
    shutil.copytree(ref / "checkpoint-4", out / "checkpoint-8")  # newest, but without its trainer state
    (out / "checkpoint-8/trainer_state.json").unlink()
    shutil.copytree(ref / "checkpoint-6", out / ".tmp-checkpoint-6/checkpoint-6")  # a killed staged save
    for stale in ("model-00001-of-00002.safetensors", "model.safetensors.index.json"):  # an older final model
        (out / stale).write_text("stale")
    w = inputs / "world/llava"
    cmd = [sys.executable, "-m", "llava_train.train", "--config", "configs/llava/stage2_tiny.yaml",
           "--model_name_or_path", str(inputs / "lm"), "--vision_tower", str(inputs / "tower"),
           "--data_path", str(w / "stage2.json"), "--image_folder", str(w / "images"), "--output_dir", str(out),
           "--max_steps", "6", "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "2",
           "--logging_steps", "1", "--resume_from_checkpoint", "true"]
    r = subprocess.run(cmd, cwd=REPO, env=offline_env(), capture_output=True, text=True, timeout=300, check=False)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-6000:]
    assert f"skipping incomplete checkpoint {out / 'checkpoint-8'} (missing trainer_state.json)" in log
    assert f"skipping incomplete checkpoint {out / 'checkpoint-6'}" in log
    assert f"resuming from {out / 'checkpoint-4'}" in log
    ours = dict(map(tuple, json.loads((out / "run_report.json").read_text())["losses"]))
    reference = dict(map(tuple, json.loads((ref / "run_report.json").read_text())["losses"]))
    assert set(ours) == set(reference) == {1, 2, 3, 4, 5, 6}
    assert all(abs(ours[s] - reference[s]) <= 1e-6 for s in ours), (ours, reference)
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert set(a) == set(b) and all((a[k] == b[k]).all() for k in a)
    # save_total_limit 2 counts complete checkpoints only: checkpoint-8 (incomplete) pushes nothing out
    assert ck.checkpoint_problem(out / "checkpoint-4") is None and ck.checkpoint_problem(out / "checkpoint-6") is None
    assert ck.checkpoint_problem(out / "checkpoint-8") is not None
    assert not list(out.glob(".tmp-*")) and not list(out.glob(".old-*")) and not (out / ".final.ready").exists()
    # the re-run's final replaced the older final whole: no stale shard or index survives
    assert not (out / "model-00001-of-00002.safetensors").exists()
    assert not (out / "model.safetensors.index.json").exists()
    manifest = json.loads((out / ck.FINAL_MANIFEST).read_text())["files"]
    assert "model.safetensors" in manifest and "mm_projector.safetensors" in manifest
    assert all((out / n).is_file() for n in manifest)


# ---- checkpoint selection and rotation (no training) ----

def _complete_checkpoint(run: Path, step: int) -> Path:
    staged = run / f"{ck.STAGING_PREFIX}{step}" / f"checkpoint-{step}"
    staged.mkdir(parents=True)
    (staged / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (staged / "model.safetensors").write_bytes(b"w" * 64)
    return ck.publish_checkpoint(staged, run / f"checkpoint-{step}")


def test_resolve_resume_takes_the_newest_complete_checkpoint(tmp_path, caplog):
    run = tmp_path / "run"
    assert ck.resolve_resume("true", run) is None  # nothing yet: start from step 0
    _complete_checkpoint(run, 2)
    _complete_checkpoint(run, 4)
    (run / "checkpoint-4/model.safetensors").write_bytes(b"w" * 10)  # truncated after the fact
    (run / "checkpoint-6").mkdir()
    legacy = run / "checkpoint-5"  # stock HF layout, no marker, no trainer state
    legacy.mkdir()
    (legacy / "model.safetensors").write_bytes(b"w")
    (run / f"{ck.STAGING_PREFIX}8").mkdir()
    with caplog.at_level(logging.WARNING, logger="llava_train.checkpoints"):
        assert ck.resolve_resume("last", run) == str(run / "checkpoint-2")
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "checkpoint-4 (model.safetensors has 10 bytes, expected 64)" in warned
    assert "checkpoint-5 (no trainer_state.json)" in warned and "checkpoint-6 (no trainer_state.json)" in warned
    assert ck.resolve_resume(None, run) is None and ck.resolve_resume("false", run) is None
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        ck.resolve_resume(str(run / "checkpoint-6"), run)
    assert ck.resolve_resume(str(run / "checkpoint-2"), run) == str(run / "checkpoint-2")


def test_rotation_counts_complete_checkpoints_only(tmp_path):
    run = tmp_path / "run"
    for step in (2, 4):
        _complete_checkpoint(run, step)
    for step in (6, 8):
        (run / f"checkpoint-{step}").mkdir()  # incomplete, newer
    assert ck.rotate_complete(run, 2, keep={run / "checkpoint-4"}) == []
    _complete_checkpoint(run, 10)
    assert ck.rotate_complete(run, 2, keep={run / "checkpoint-10"}) == [run / "checkpoint-2"]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint-10", "checkpoint-4", "checkpoint-6", "checkpoint-8"]


# ---- the final model directory under crashes ----

OTHER = {"run_report.json": "report", "init/config.json": "init", "checkpoint-2/trainer_state.json": "{}"}
OLD_LEGACY = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
              "model.safetensors.index.json", "tokenizer.json", "mm_projector.safetensors"]
NEW = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "mm_projector.safetensors"]
NEWER = ["config.json", "model.safetensors", "tokenizer.json", "special_tokens_map.json"]


class Crash(Exception):
    pass


def _write(root: Path, names, tag: str) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_text(tag)


def _stage(out: Path, names, tag: str) -> Path:
    staged = out / ck.FINAL_STAGING
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    _write(staged, names, tag)
    return staged


def _final_state(out: Path, versions: dict[str, list[str]]) -> str:
    """'absent' or the tag of the one complete version present; fails on anything mixed or partial."""
    names = set().union(*versions.values())
    present = {n: (out / n).read_text() for n in names if (out / n).is_file()}
    assert len(set(present.values())) <= 1, f"files of several saves mixed: {present}"
    assert all((out / n).read_text() == t for n, t in OTHER.items()), "a non-final file was touched"
    if not any(m in present for m in ck.LOAD_MARKERS):
        return "absent"
    tag = present["config.json"]
    assert set(present) == set(versions[tag]), f"{tag} model with files {sorted(present)}"
    return tag


def _fs_calls(monkeypatch, crash_at: int) -> list:
    """Make the `crash_at`-th filesystem mutation (rename/replace/unlink/rmdir) raise, as a kill would."""
    calls = []
    for name in ("rename", "replace", "unlink", "remove", "rmdir"):
        real = getattr(os, name)

        def wrapped(*a, _real=real, _name=name, **kw):
            calls.append(_name)
            if len(calls) == crash_at:
                raise Crash(f"killed at {_name} #{crash_at}")
            return _real(*a, **kw)
        monkeypatch.setattr(os, name, wrapped)
    return calls


@pytest.mark.parametrize("old_names,old_manifest", [(OLD_LEGACY, False), (NEWER, True)], ids=["legacy", "manifest"])
def test_publish_final_is_valid_or_absent_at_every_crash_point(tmp_path, monkeypatch, old_names, old_manifest):
    versions = {"old": old_names, "new": NEW}

    def fresh(root: Path) -> Path:
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        for n, t in OTHER.items():
            _write(root, [n], t)
        if old_manifest:
            ck.publish_final(_stage(root, old_names, "old"), root)
        else:
            _write(root, old_names, "old")
        return root

    with monkeypatch.context() as m:  # how many mutations an uninterrupted publish makes
        out = fresh(tmp_path / "count")
        staged = _stage(out, NEW, "new")
        calls = _fs_calls(m, crash_at=-1)
        ck.publish_final(staged, out)
    total = len(calls)
    assert _final_state(out, versions) == "new" and total > len(NEW)
    seen = set()
    for k in range(1, total + 1):
        out = fresh(tmp_path / f"crash{k}")
        staged = _stage(out, NEW, "new")
        with monkeypatch.context() as m:
            _fs_calls(m, crash_at=k)
            with pytest.raises(Crash):
                ck.publish_final(staged, out)
        seen.add(_final_state(out, versions))  # old, absent or new: never mixed, never partial
        ck.publish_final(_stage(out, NEW, "new"), out)  # the relaunch redoes the final save
        assert _final_state(out, versions) == "new"
        assert not (out / ck.FINAL_READY).exists() and not (out / ck.FINAL_STAGING).exists()
    assert seen == {"old", "absent", "new"}  # crash points before, inside and after the switch


def test_save_final_failing_mid_save_keeps_the_old_model(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for n, t in OTHER.items():
        _write(out, [n], t)
    ck.publish_final(_stage(out, NEWER, "old"), out)
    versions = {"old": NEWER, "new": NEW + ["adapter_model.safetensors"]}

    def broken_save(staged):
        _write(Path(staged), ["model.safetensors", "tokenizer.json"], "new")
        raise Crash("killed while writing the weights")

    fake = SimpleNamespace(args=SimpleNamespace(should_save=True),
                           accelerator=SimpleNamespace(wait_for_everyone=lambda: None), save_model=broken_save)
    with pytest.raises(Crash):
        ck.AtomicCheckpoints.save_final(fake, out)
    assert _final_state(out, versions) == "old"
    fake.save_model = lambda staged: _write(Path(staged), NEW, "new")
    ck.AtomicCheckpoints.save_final(fake, out, before_publish=lambda d: _write(d, ["adapter_model.safetensors"], "new"))
    assert _final_state(out, versions) == "new"
    assert not (out / ck.FINAL_STAGING).exists() and not (out / ck.FINAL_READY).exists()
