"""`eval report` on hand-built lmms-eval results/samples files: scores, deltas, bootstrap intervals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clips_llava_eval.cli import main
from clips_llava_eval.report import paired_bootstrap

PREFIX = "20260101_000000"


def write_run(root: Path, tasks: dict[str, tuple[dict, list[dict]]]) -> Path:
    """tasks: name -> (results entry, per-sample rows); files laid out as lmms-eval writes them."""
    d = root / "lmms-eval" / "model__x"
    d.mkdir(parents=True)
    (d / f"{PREFIX}_results.json").write_text(json.dumps({"results": {t: r for t, (r, _) in tasks.items()}}))
    for t, (_, rows) in tasks.items():
        (d / f"{PREFIX}_samples_{t}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def gqa(scores: list[float]):
    rows = [{"doc_id": i, "exact_match": s} for i, s in enumerate(scores)]
    return {"exact_match,none": float(np.mean(scores))}, rows


def pope(preds: list[str], gts: list[str]):
    """As lmms-eval's POPE logs it: one per-sample dict under every metric key."""
    from lmms_eval.tasks.pope import utils
    metrics = ("f1_score", "accuracy", "yes_ratio")
    values = [{"question_id": str(i), "score": float(p == g), "prediction": p, "ground_truth": g}
              for i, (p, g) in enumerate(zip(preds, gts))]
    rows = [{"doc_id": i, **{f"pope_{m}": v for m in metrics}} for i, v in enumerate(values)]
    return {f"pope_{m},none": getattr(utils, f"pope_aggregate_{m}")(values) for m in metrics}, rows


def mme(correct: list[tuple[float, float]]):
    rows, k = [], 0
    for img, pair in enumerate(correct):
        for s in pair:
            rows.append({"doc_id": k, "mme_perception_score": {"question_id": f"{img}.png", "category": "color", "score": s}})
            k += 1
    from clips_llava_eval.tasks.utils import mme_aggregate_results
    return {"mme_perception_score,none": mme_aggregate_results([r["mme_perception_score"] for r in rows])}, rows


def test_bootstrap_degenerate_and_normal_cases():
    assert paired_bootstrap([0.0] * 50, [1.0] * 50, n_boot=500) == (1.0, 1.0)
    # delta of means with 0/1 outcomes: 0.5 +- 1.96 * sqrt(0.25 / 400) = [0.451, 0.549]
    lo, hi = paired_bootstrap([0.0] * 400, [1.0, 0.0] * 200, n_boot=4000, seed=1)
    assert lo == pytest.approx(0.451, abs=0.012) and hi == pytest.approx(0.549, abs=0.012)


def test_bootstrap_keeps_clusters_together():
    # Each unit's two samples are identical, so resampling units (not samples) gives only deltas
    # that are means over whole units; with 2 units: 0, 0.5 or 1.
    base, other = [0.0] * 4, [1.0, 1.0, 0.0, 0.0]
    lo, hi = paired_bootstrap(base, other, units=["a", "a", "b", "b"], n_boot=300)
    assert {lo, hi} <= {0.0, 0.5, 1.0}


def test_report_numbers_files_and_cli(tmp_path, capsys):
    gts = ["yes", "no"] * 20
    base = write_run(tmp_path / "base", {
        "synth_gqa": gqa([0.0] * 30),
        "synth_pope": pope(["yes"] * 40, gts),
        "synth_mme": mme([(1, 0)] * 10),
    })
    new = write_run(tmp_path / "new", {
        "synth_gqa": gqa([1.0] * 30),
        "synth_pope": pope(list(gts), gts),
        "synth_mme": mme([(1, 1)] * 10),
    })
    out = tmp_path / "report"
    rc = main(["report", "--run", f"openai-clip={base}", "--run", f"clips={new}", "--baseline", "openai-clip",
               "--out", str(out), "--bootstrap", "300"])
    assert rc == 0
    rows = {r["metric"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    g = rows["exact_match"]["deltas"]["clips"]
    assert (g["delta"], g["ci_low"], g["ci_high"], g["n"]) == (1.0, 1.0, 1.0, 30)
    assert rows["pope_yes_ratio"]["scores"] == {"openai-clip": 1.0, "clips": 0.5}
    p = rows["pope_f1_score"]
    assert p["scores"]["openai-clip"] == pytest.approx(2 / 3) and p["scores"]["clips"] == 1.0  # F1
    assert p["deltas"]["clips"]["delta"] == pytest.approx(1 / 3)
    assert p["deltas"]["clips"]["ci_low"] <= 1 / 3 <= p["deltas"]["clips"]["ci_high"]
    m = rows["mme_perception_score"]["deltas"]["clips"]  # 50 -> 200 on every image
    assert (m["delta"], m["ci_low"], m["ci_high"], m["n"]) == (150.0, 150.0, 150.0, 20)
    md = (out / "report.md").read_text()
    assert "| GQA-style | exact_match | 0 | 1 | +1 | [+1, +1] | 30 |" in md
    assert (out / "gains.png").stat().st_size > 1000
    assert "GQA-style" in capsys.readouterr().out


def test_report_usage_errors(tmp_path, capsys):
    run = write_run(tmp_path / "a", {"synth_gqa": gqa([1.0])})
    assert main(["report", "--run", f"a={run}", "--baseline", "b", "--out", str(tmp_path / "o")]) == 2
    assert "not one of the runs" in capsys.readouterr().err
    assert main(["report", "--run", f"a={tmp_path / 'nothing'}", "--baseline", "a", "--out", str(tmp_path / "o")]) == 2
    assert "no lmms-eval" in capsys.readouterr().err
    assert main(["report", "--run", "justaname", "--baseline", "a", "--out", str(tmp_path / "o")]) == 2


def test_vision_gap_rows_pair_each_run_with_its_blind_control(tmp_path):
    gts = ["yes", "no"] * 20
    runs = {
        "clip-web": write_run(tmp_path / "cw", {"synth_gqa": gqa([0.0, 1.0] * 15)}),
        "clips": write_run(tmp_path / "c", {"synth_gqa": gqa([1.0] * 30), "synth_pope": pope(list(gts), gts)}),
        # blind: the same questions answered from priors only ("yes" to every POPE question)
        "clips-blind": write_run(tmp_path / "cb", {"synth_gqa": gqa([1.0] * 10 + [0.0] * 20),
                                                   "synth_pope": pope(["yes"] * 40, gts)}),
    }
    out = tmp_path / "report"
    argv = ["report", "--baseline", "clip-web", "--out", str(out), "--bootstrap", "300"]
    for name, d in runs.items():
        argv += ["--run", f"{name}={d}"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())
    gaps = {(r["run"], r["metric"]): r for r in report["vision_gaps"]}
    assert {run for run, _ in gaps} == {"clips"}  # clip-web has no blind control
    g = gaps[("clips", "exact_match")]
    assert (g["real"], g["gap"], g["n"]) == (1.0, pytest.approx(2 / 3), 30)
    assert g["ci_low"] <= 2 / 3 <= g["ci_high"] and g["ci_low"] > 0.4
    acc = gaps[("clips", "pope_accuracy")]
    assert (acc["real"], acc["blind"], acc["gap"]) == (1.0, 0.5, 0.5)
    assert gaps[("clips", "pope_yes_ratio")]["blind"] == 1.0
    # the blind run is a control, not a tower: it has no column in the gains table
    assert all("clips-blind" not in r["scores"] for r in report["rows"])
    md = (out / "report.md").read_text()
    assert "## Vision gap" in md and "| clips | GQA-style | exact_match | 1 | 0.3333 | +0.6667 |" in md
    assert main(["report", "--baseline", "clips-blind", "--out", str(out), "--run", f"clips={runs['clips']}",
                 "--run", f"clips-blind={runs['clips-blind']}"]) == 2
