"""End-to-end: `clips-llava demo --preset tiny` runs every step, writes every artefact, and resumes.

This is the slowest test in the suite: it trains two tiny towers (and exports a third, untrained:
the random-tower control), a tiny LM, stage 1 + stage 2 for each tower through the DeepSpeed stage
scripts, evaluates the three LLaVAs with lmms-eval, each also blind (every image replaced by one
fixed image), and writes the gains report with its vision-gap rows and the training curves.
"""
from __future__ import annotations

import json

import pytest

from llava_train.pipeline import demo


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "tiny"
    assert demo.main(["--out", str(out), "--preset", "tiny"]) == 0
    return out


RUNS = ("clip-web", "clips", "random-tower")


def test_every_artefact_exists(demo_run):
    out = demo_run
    assert (out / "world" / "MANIFEST.json").is_file()
    # the LM's curriculum: the world's look-up lines alone, then with its corpus, from that checkpoint
    assert (out / "lm-lookup" / "model.safetensors").is_file() and (out / "lm" / "model.safetensors").is_file()
    lm_log = next((out / "logs").glob("*-lm-pretrain.log")).read_text().splitlines()[0]
    assert f"--model {out / 'lm-lookup'}" in lm_log and "lookup.txt" in lm_log and "corpus.txt" in lm_log
    for name in RUNS:
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
        for stage in ("stage1", "stage2-existence", "stage2"):
            assert (out / "llava" / name / stage).is_dir()
        # stage 2 ran first on the existence conversations, then on the full mix from that LLaVA
        s2e_log = next((out / "logs").glob(f"*-stage2-existence-{name}.log")).read_text().splitlines()[0]
        assert "stage2_existence.json" in s2e_log and f"--pretrain_mm_mlp_adapter {out / 'llava' / name / 'stage1'}" in s2e_log
        s2_log = next((out / "logs").glob(f"*-stage2-{name}.log")).read_text().splitlines()[0]
        assert f"--model_name_or_path {out / 'llava' / name / 'stage2-existence'}" in s2_log
        assert (out / "llava" / name / "stage2" / "model.safetensors").is_file()
        assert (out / "llava" / name / "stage2" / "processor_config.json").is_file() or \
            (out / "llava" / name / "stage2" / "preprocessor_config.json").is_file()
        for label in (name, f"{name}-blind") if name == "clips" else (name,):
            assert list((out / "eval" / label).rglob("*results*.json")), f"no lmms-eval results for {label}"
            assert json.loads((out / "eval" / label / "run.json").read_text())["blind"] == label.endswith("-blind")
            assert list((out / "eval" / label).rglob("*_samples_synth_pope.jsonl")), "per-sample logs are kept"
    # the random tower is the same architecture as clips, untrained: its weights differ from the trained one's
    from safetensors.torch import load_file
    rand = load_file(next((out / "hf-towers" / "random-tower").glob("*.safetensors")))
    trained = load_file(next((out / "hf-towers" / "clips").glob("*.safetensors")))
    assert rand.keys() == trained.keys() and any(not rand[k].equal(trained[k]) for k in rand)
    report = (out / "report" / "report.md").read_text()
    assert "clip-web" in report and "clips" in report and "## Vision gap" in report
    assert (out / "report" / "gains.png").stat().st_size > 1000
    data = json.loads((out / "report" / "report.json").read_text())
    assert data["baseline"] == "clip-web" and set(data["runs"]) == {*RUNS, "clips-blind"}  # tiny: one blind run
    assert data["rows"] and all(set(r["scores"]) == set(RUNS) for r in data["rows"])
    gaps = data["vision_gaps"]
    assert {g["run"] for g in gaps} == {"clips"}
    for g in gaps:  # gap = real - blind, paired over the same questions
        assert g["gap"] == pytest.approx(g["real"] - g["blind"]) and g["n"] >= 1
    assert (out / "report" / "curves.png").stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    assert "clips-llava chat --model" in summary and "Step times" in summary and "curves.png" in summary
    assert "| random-tower |" in summary
    manifest = json.loads((out / "demo_manifest.json").read_text())
    assert len(manifest["steps"]) == len(demo.build_steps(demo.get_preset("tiny"), out, 0))


def test_rerun_skips_complete_steps_and_redoes_a_damaged_one(demo_run, capsys):
    out = demo_run
    (out / "report" / "report.md").write_text("tampered\n")
    assert demo.main(["--out", str(out), "--preset", "tiny"]) == 0
    printed = capsys.readouterr().out
    # the report reruns, and only what reads it: the curves read the stage-2 runs, so they are skipped
    assert printed.count("(manifest hashes match), skipped") == len(demo.build_steps(demo.get_preset("tiny"), out, 0)) - 1
    assert "] report: running (log: logs/" in printed and "] curves: complete" in printed
    assert "lmms_eval" not in printed  # step output goes to the step's log, not the terminal
    assert "clip-web" in (out / "report" / "report.md").read_text()


def test_unknown_preset_is_a_usage_error(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path / "x"), "--preset", "huge"]) == 2
    assert "known: demo, tiny, ablation, ablation-tiny" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_seeds_repeat_the_llava_stages_and_blind_only_the_first(tmp_path):
    names = [s.name for s in demo.build_steps(demo.get_preset("tiny"), tmp_path, 0, seeds=2)]
    for tower in RUNS:
        assert names.count(f"tower-{tower}") == 1  # towers and LM are trained once
        for run in (tower, f"{tower}-seed1"):
            assert {f"stage1-{run}", f"stage2-{run}", f"eval-{run}"} <= set(names)
        assert f"eval-{tower}-seed1-blind" not in names
    assert "eval-clips-blind" in names and "eval-clip-web-blind" not in names  # tiny blinds clips only
    demo_names = [s.name for s in demo.build_steps(demo.get_preset("demo"), tmp_path, 0)]
    assert {f"eval-{t}-blind" for t in RUNS} <= set(demo_names)  # the demo blinds every tower
    seeds = {s.name: s.argv[s.argv.index("--seed") + 1] for s in demo.build_steps(demo.get_preset("tiny"), tmp_path, 3, 2)
             if s.name.startswith("stage2-")}
    assert seeds == {f"stage2-{p}{t}": "3" for t in RUNS for p in ("", "existence-")} | \
        {f"stage2-{p}{t}-seed1": "4" for t in RUNS for p in ("", "existence-")}
    assert all("--limit" not in s.argv for s in demo.build_steps(demo.get_preset("demo"), tmp_path, 0))  # every item


def test_ablation_preset_on_the_tiny_world(tmp_path):
    from llava_train.pipeline import ablation

    # by default every variant is trained with 2 seeds, all with the same step budget
    steps = ablation.build_steps(ablation.ABLATION_PRESETS["ablation-tiny"], tmp_path, 0)
    towers = [s for s in steps if s.name.startswith("tower-")]
    assert len(towers) == 2 * len(ablation.VARIANTS) == 14
    assert {s.argv[s.argv.index("--steps") + 1] for s in towers} == {"4"}
    out = tmp_path / "ablation"
    assert demo.main(["--out", str(out), "--preset", "ablation-tiny", "--seeds", "1"]) == 0  # 1 seed: test time
    rows = json.loads((out / "ablation" / "ablation.json").read_text())["rows"]
    assert [(r["strategy"], r["k"]) for r in rows] == ablation.VARIANTS
    for r in rows:
        assert r["seeds"] == 1
        for m in ("i2t_R@1", "t2i_R@1"):
            v = r[m]
            assert v["min"] <= v["mean"] <= v["max"] and len(v["values"]) == 1
    # each variant really trained with its own strategy and K (the run records its resolved config)
    for name, strategy, k in (("block-k32-seed0", "block", 32), ("subcaption-k64-seed1", "subcaption", 64)):
        method = json.loads((out / "towers" / name.replace("seed1", "seed0") / "run_config.json").read_text())["method"]
        assert (method["strategy"], method["k"]) == (strategy, k)
    md = (out / "ablation" / "ablation.md").read_text()
    assert "| subcaption | 64 | 1 |" in md and "| full | all | 1 |" in md
    assert (out / "ablation" / "ablation.png").stat().st_size > 1000
