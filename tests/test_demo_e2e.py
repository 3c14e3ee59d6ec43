"""End-to-end: `clips-llava demo --preset tiny` runs every step, writes every artefact, and resumes.

This is the slowest test in the suite (about 1.5 minutes on 2 cores): it trains two tiny towers,
a tiny LM, stage 1 + stage 2 for each tower through the DeepSpeed stage scripts, evaluates both
with lmms-eval and writes the gains report.
"""
from __future__ import annotations

import json

import pytest

from llava_train import demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "tiny"
    assert demo.main(["--out", str(out), "--preset", "tiny", "--quiet"]) == 0
    return out


def test_every_artefact_exists(demo_run):
    out = demo_run
    assert (out / "world" / "MANIFEST.json").is_file()
    for name in ("clip-web", "clips"):
        assert (out / "towers" / name / "export" / "open_clip_config.json").is_file()
        metrics = json.loads((out / "towers" / name / "retrieval.json").read_text())
        split = json.loads((out / "world" / "eval" / "retrieval" / "dataset.json").read_text())["images"]
        test = [e for e in split if e.get("split") == "test"] if any(e.get("split") == "test" for e in split) else split
        assert metrics["n_images"] == len(test) and metrics["n_texts"] == sum(len(e["sentences"]) for e in test)
        for way in ("i2t", "t2i"):  # recall is monotone in k and a multiple of one query's share
            r1, r5, r10 = (metrics[f"{way}_R@{k}"] for k in (1, 5, 10))
            assert 0.0 <= r1 <= r5 <= r10 <= 100.0, metrics
            queries = metrics["n_images"] if way == "i2t" else metrics["n_texts"]
            assert abs(r1 * queries / 100 - round(r1 * queries / 100)) < 1e-6, metrics
        assert (out / "hf-towers" / name / "config.json").is_file()
        for stage in ("stage1", "stage2"):
            assert (out / "llava" / name / stage).is_dir()
        assert (out / "llava" / name / "stage2" / "model.safetensors").is_file()
        assert (out / "llava" / name / "stage2" / "processor_config.json").is_file() or \
            (out / "llava" / name / "stage2" / "preprocessor_config.json").is_file()
        assert list((out / "eval" / name).rglob("*results*.json")), f"no lmms-eval results for {name}"
    report = (out / "report" / "report.md").read_text()
    assert "clip-web" in report and "clips" in report
    assert (out / "report" / "gains.png").stat().st_size > 1000
    data = json.loads((out / "report" / "report.json").read_text())
    assert data["baseline"] == "clip-web" and set(data["runs"]) == {"clip-web", "clips"}
    assert data["rows"] and all(set(r["scores"]) == {"clip-web", "clips"} for r in data["rows"])
    summary = (out / "summary.md").read_text()
    assert "clips-llava chat --model" in summary and "Step times" in summary
    manifest = json.loads((out / "demo_manifest.json").read_text())
    assert len(manifest["steps"]) == len(demo.build_steps(demo.get_preset("tiny"), out, 0))


def test_rerun_skips_complete_steps_and_redoes_a_damaged_one(demo_run, capsys):
    out = demo_run
    (out / "report" / "report.md").write_text("tampered\n")
    assert demo.main(["--out", str(out), "--preset", "tiny", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("(manifest hashes match), skipped") == len(demo.build_steps(demo.get_preset("tiny"), out, 0)) - 1
    assert "report: done in" in printed
    assert "clip-web" in (out / "report" / "report.md").read_text()


def test_unknown_preset_is_a_usage_error(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path / "x"), "--preset", "huge"]) == 2
    assert "known: demo, tiny" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
