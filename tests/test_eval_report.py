"""`eval report` on hand-built lmms-eval results/samples files: scores, deltas, bootstrap intervals."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eval.cli import main
from eval.report import paired_bootstrap

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
    rows = [{"doc_id": i, "pope_f1_score": {"question_id": str(i), "score": float(p == g), "prediction": p, "ground_truth": g}}
            for i, (p, g) in enumerate(zip(preds, gts))]
    from lmms_eval.tasks.pope.utils import pope_aggregate_f1_score
    return {"pope_f1_score,none": pope_aggregate_f1_score([r["pope_f1_score"] for r in rows])}, rows


def mme(correct: list[tuple[float, float]]):
    rows, k = [], 0
    for img, pair in enumerate(correct):
        for s in pair:
            rows.append({"doc_id": k, "mme_perception_score": {"question_id": f"{img}.png", "category": "color", "score": s}})
            k += 1
    from eval.tasks.utils import mme_aggregate_results
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
    rows = {r["task"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    g = rows["synth_gqa"]["deltas"]["clips"]
    assert (g["delta"], g["ci_low"], g["ci_high"], g["n"]) == (1.0, 1.0, 1.0, 30)
    p = rows["synth_pope"]
    assert p["scores"]["openai-clip"] == pytest.approx(2 / 3) and p["scores"]["clips"] == 1.0  # F1
    assert p["deltas"]["clips"]["delta"] == pytest.approx(1 / 3)
    assert p["deltas"]["clips"]["ci_low"] <= 1 / 3 <= p["deltas"]["clips"]["ci_high"]
    m = rows["synth_mme"]["deltas"]["clips"]  # 50 -> 200 on every image
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
