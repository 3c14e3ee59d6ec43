"""CLIPS pretraining end to end on the tiny world: train main(), resume equality, skips, export, eval."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from clips_tower import retrieval, train

CFG = "configs/clips/tiny.yaml"
FAST = ["--steps", "4", "--batch-size", "4"]


def _metrics(run):
    return [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight_run(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("clips") / "straight"
    assert train.main(["--config", CFG, "--data", str(tiny_world), "--out", str(out), *FAST]) == 0
    return out


@pytest.mark.slow
def test_train_writes_metrics_checkpoint_and_export(straight_run):
    rows = _metrics(straight_run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["caption"] > 0 and r["web"] > 0 and r["syn"] > 0 for r in rows)
    assert (straight_run / "checkpoints" / "step-00000004" / "model.safetensors").is_file()
    cfg = json.loads((straight_run / "export" / "open_clip_config.json").read_text())
    assert set(cfg) == {"model_cfg", "preprocess_cfg"} and "captioner_cfg" not in cfg["model_cfg"]
    assert list((straight_run / "tb").iterdir())


@pytest.mark.slow
def test_resume_reproduces_the_straight_loss_curve(straight_run, tiny_world, tmp_path):
    out = tmp_path / "resumed"
    args = ["--config", CFG, "--data", str(tiny_world), "--out", str(out), *FAST]
    assert train.main([*args, "--stop-at", "2"]) == 0
    assert not (out / "export").exists()
    assert train.main([*args, "--resume"]) == 0
    a, b = _metrics(straight_run), _metrics(out)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-6, abs=1e-7), (ra, rb)


@pytest.mark.slow
def test_stock_open_clip_reloads_the_export(straight_run):
    """A fresh interpreter that imports only open_clip/torch loads and encodes with the export."""
    code = f"""
import sys, torch, open_clip
from PIL import Image
m, pre = open_clip.create_model_from_pretrained('local-dir:{straight_run / "export"}')
tok = open_clip.get_tokenizer('local-dir:{straight_run / "export"}')
with torch.no_grad():
    i = m.encode_image(pre(Image.new('RGB', (50, 40), 'red')).unsqueeze(0))
    t = m.encode_text(tok(['a red circle', 'two blue squares']))
assert i.shape == (1, 32) and t.shape == (2, 32), (i.shape, t.shape)
assert not any(k.startswith(('clips_tower', 'llava_train', 'clips_llava_eval')) for k in sys.modules)
print('OK', type(m).__name__)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert res.returncode == 0 and "OK CLIP" in res.stdout, res.stderr[-2000:]


@pytest.mark.slow
def test_retrieval_eval_on_the_export(straight_run, tiny_world, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert retrieval.main(["--model", str(straight_run), "--data", str(tiny_world), "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["n_images"] == 12 and m["n_texts"] >= 12
    for k in ("i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5", "t2i_R@10"):
        assert 0.0 <= m[k] <= 100.0
    assert m["i2t_R@10"] >= m["i2t_R@5"] >= m["i2t_R@1"]
    assert m["t2i_R@10"] >= m["t2i_R@5"] >= m["t2i_R@1"]


def _bad_shard(tiny_world, path, drop_web_everywhere=False):
    """Copy 12 samples of the tiny world, corrupting one image and removing both captions of another."""
    src = tarfile.open(sorted((tiny_world / "pretrain").glob("*.tar"))[0])
    members = {m.name: src.extractfile(m).read() for m in src.getmembers() if m.isfile()}
    keys = sorted({n.split(".")[0] for n in members})[:12]
    with tarfile.open(path, "w") as out:
        for i, key in enumerate(keys):
            for ext in ("png", "txt", "json"):
                data = members[f"{key}.{ext}"]
                if i == 3 and ext == "png":
                    data = b"not a png"
                if (i == 5 or drop_web_everywhere) and ext in ("txt", "json"):
                    meta = json.loads(members[f"{key}.json"])
                    if ext == "txt":
                        continue
                    meta.pop("web_caption")
                    if i == 5:
                        meta.pop("synthetic_caption")
                    data = json.dumps(meta).encode()
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                out.addfile(info, io.BytesIO(data))
    return keys


@pytest.mark.slow
def test_bad_samples_are_skipped_counted_and_reported(tiny_world, tmp_path, capsys):
    shards = tmp_path / "shards"
    shards.mkdir()
    keys = _bad_shard(tiny_world, shards / "bad-000000.tar")
    # no shuffling, so the 2 steps x 4 good samples read samples 0..9 in order (3 and 5 are bad)
    cfg = tmp_path / "noshuffle.yaml"
    text = open(CFG).read().replace("models/tiny.json", str(Path(CFG).resolve().parent / "models" / "tiny.json"))
    cfg.write_text(text.replace("shuffle_buffer: 32", "shuffle_buffer: 1").replace("shuffle_initial: 8", "shuffle_initial: 1"))
    out = tmp_path / "run"
    rc = train.main(["--config", str(cfg), "--data", str(shards), "--out", str(out), "--steps", "2", "--batch-size", "4"])
    assert rc == 0
    report = json.loads((out / "skipped.json").read_text())
    assert report["reasons"] == {"corrupt image": 1, "missing web caption": 1}
    assert f"{keys[3]} (corrupt image)" in report["keys"] and f"{keys[5]} (missing web caption)" in report["keys"]
    assert "skipped" in capsys.readouterr().out


def test_input_errors_are_one_line_before_training(tiny_world, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train.main(["--config", CFG, "--data", str(empty), "--out", str(tmp_path / "o1")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("clips-llava clips train: error: no webdataset shards") and "\n" not in err
    nocap = tmp_path / "nocap"
    nocap.mkdir()
    _bad_shard(tiny_world, nocap / "x-000000.tar", drop_web_everywhere=True)
    assert train.main(["--config", CFG, "--data", str(nocap), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no sample" in err and "web caption" in err and "\n" not in err
    assert not (tmp_path / "o2").exists()
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("model: configs/clips/models/tiny.json\nmethod: {strategy: blocks}\n")
    assert train.main(["--config", str(bad_cfg), "--data", str(tiny_world), "--out", str(tmp_path / "o3")]) == 2
    assert "known: full, truncation" in capsys.readouterr().err


def test_zero_steps_exports_the_untrained_tower_and_set_overrides_any_field(straight_run, tiny_world, tmp_path, capsys):
    import open_clip

    out = tmp_path / "random"
    assert train.main(["--config", CFG, "--data", str(tiny_world), "--out", str(out), "--steps", "0",
                       "--set", "method.strategy=block", "--set", "method.k=8"]) == 0
    assert _metrics(out) == []  # nothing trained
    method = json.loads((out / "run_config.json").read_text())["method"]
    assert (method["strategy"], method["k"]) == ("block", 8)
    untrained, _, _ = open_clip.create_model_and_transforms(f"local-dir:{out / 'export'}")
    trained, _, _ = open_clip.create_model_and_transforms(f"local-dir:{straight_run / 'export'}")
    a, b = untrained.state_dict(), trained.state_dict()
    assert a.keys() == b.keys() and any(not a[k].equal(b[k]) for k in a)  # same architecture, other weights
    capsys.readouterr()
    assert train.main(["--config", CFG, "--data", str(tiny_world), "--out", str(tmp_path / "x"),
                       "--set", "method.k"]) == 2
    assert "expected SECTION.KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_build_and_train_step_are_the_steps_main_runs(straight_run, tiny_world):
    """The step benchmark's path (build + stream + train_step) gives main()'s loss curve exactly."""
    from clips_tower.config import load_run_config
    from clips_tower.train_step import build, train_step

    setup = build(load_run_config(CFG, {"optim.steps": 4, "optim.batch_size": 4}), str(tiny_world))
    rows = []
    for _, batch in zip(range(4), setup.stream()):
        terms = train_step(setup, batch)
        rows.append({**{k: float(v.detach()) for k, v in terms.items()}, "lr": setup.scheduler.get_last_lr()[0]})
    for ra, rb in zip(_metrics(straight_run), rows):
        assert {k: ra[k] for k in rb} == rb


def test_resume_with_another_process_count_is_an_input_error(straight_run, tiny_world):
    from clips_tower.checkpoint import RunCheckpoints
    from clips_tower.config import load_run_config
    from clips_tower.inputs import InputError
    from clips_tower.train_step import build

    s = build(load_run_config(CFG, {"optim.steps": 4, "optim.batch_size": 4}), str(tiny_world))
    with pytest.raises(InputError, match=r"step-00000004 was written by 1 process\(es\); resume with the same number"):
        RunCheckpoints(straight_run / "checkpoints", rank=0, world=2, keep=2).restore(s.model, s.optimizer, s.scheduler)
    step, data = RunCheckpoints(straight_run / "checkpoints", 0, 1, 2).restore(s.model, s.optimizer, s.scheduler)
    assert step == 4 and data["consumed"] >= 16 and data["skipped"] == {}
