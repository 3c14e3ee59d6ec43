"""`eval run` through the user command on a tiny random stock HF Llava, the stock lmms-eval command,
the lmms-eval 0.7.3 workarounds, and the failure paths."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clips_llava_eval.cli import main

REPO = Path(__file__).resolve().parents[1]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
LOCAL_TASKS = ["synth_pope", "synth_gqa", "synth_mme", "synth_caption", "synth_textvqa", "synth_chartqa"]


def lmms_eval(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lmms_eval", *args], cwd=cwd, env={**os.environ, **OFFLINE},
                          capture_output=True, text=True, timeout=300)


def responses(results_json: Path, task: str) -> list[str]:
    path = next(results_json.parent.glob(f"*_samples_{task}.jsonl"))
    rows = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda r: r["doc_id"])
    return [r["filtered_resps"] for r in rows]


@pytest.fixture(scope="module")
def local_run(tiny_llava_dir, tiny_world, tmp_path_factory):
    """The local suite, batched (our lmms-eval model class), --limit 2, via `clips-llava eval run`."""
    out = tmp_path_factory.mktemp("eval") / "run"
    rc = main(["run", "--model", str(tiny_llava_dir), "--suite", "local", "--data", str(tiny_world),
               "--out", str(out), "--limit", "2", "--batch-size", "2"])
    return rc, out


def test_local_suite_runs_and_records(local_run, capsys):
    rc, out = local_run
    assert rc == 0
    record = json.loads((out / "run.json").read_text())
    assert record["lmms_model"] == "clips_llava_hf" and "-m lmms_eval" in record["command"]
    results = json.loads(Path(record["results"]).read_text())
    assert sorted(results["results"]) == sorted(LOCAL_TASKS)
    assert results["n-samples"]["synth_pope"]["effective"] == 2
    assert "pope_f1_score,none" in results["results"]["synth_pope"]
    assert "caption_CIDEr,none" in results["results"]["synth_caption"]


def test_report_on_a_real_run(local_run, tmp_path):
    _, out = local_run
    assert main(["report", "--run", f"a={out}", "--run", f"b={out}", "--baseline", "a",
                 "--out", str(tmp_path), "--bootstrap", "50"]) == 0
    rows = json.loads((tmp_path / "report.json").read_text())["rows"]
    assert {r["task"] for r in rows} == set(LOCAL_TASKS)
    assert all(r["deltas"]["b"]["delta"] == 0 for r in rows)


def test_stock_lmms_eval_command_on_our_model(local_run, tiny_llava_dir, tiny_world, tmp_path):
    """`python -m lmms_eval --model llava_hf ... --include_path eval/tasks` after `eval prepare`; its
    unbatched answers equal the batched ones of clips_llava_hf."""
    assert main(["prepare", "--data", str(tiny_world), "--out", str(tmp_path / "runs/eval-data"),
                 "--tasks", "synth_gqa"]) == 0
    proc = lmms_eval(["--model", "llava_hf", "--model_args", f"pretrained={tiny_llava_dir},device=cpu,device_map=cpu",
                      "--tasks", "synth_gqa", "--include_path", str(REPO / "eval/tasks"), "--limit", "2",
                      "--output_path", "out", "--log_samples"], cwd=tmp_path)
    found = list((tmp_path / "out").rglob("*_results.json"))
    assert found, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "exact_match,none" in json.loads(found[0].read_text())["results"]["synth_gqa"]
    batched = Path(json.loads((local_run[1] / "run.json").read_text())["results"])
    assert responses(found[0], "synth_gqa") == responses(batched, "synth_gqa")


MC_TASK = """task: synth_pope_mc
dataset_path: parquet
dataset_kwargs: {data_files: {test: synth_pope.parquet}}
test_split: test
output_type: multiple_choice
doc_to_visual: !function utils.doc_to_visual
doc_to_text: question
doc_to_choice: ["yes", "no"]
doc_to_target: answer
metric_list: [{metric: acc, aggregation: mean, higher_is_better: true}]
"""


def test_multiple_choice_task_runs_with_our_model(tiny_llava_dir, tiny_world, tmp_path):
    """Stock llava_hf fails here (processor without images; tuple outputs stringified by the evaluator)."""
    task_dir = tmp_path / "tasks"
    assert main(["prepare", "--data", str(tiny_world), "--out", str(task_dir), "--tasks", "synth_pope"]) == 0
    (task_dir / "synth_pope.yaml").unlink()
    (task_dir / "utils.py").write_text("from clips_llava_eval.tasks.utils import doc_to_visual  # noqa: F401\n")
    (task_dir / "synth_pope_mc.yaml").write_text(MC_TASK)
    proc = lmms_eval(["--model", "clips_llava_hf", "--model_args", f"pretrained={tiny_llava_dir},device=cpu",
                      "--tasks", "synth_pope_mc", "--include_path", str(task_dir), "--limit", "3",
                      "--output_path", "out"], cwd=tmp_path)
    found = list((tmp_path / "out").rglob("*_results.json"))
    assert found, proc.stdout[-3000:] + proc.stderr[-3000:]
    acc = json.loads(found[0].read_text())["results"]["synth_pope_mc"]["acc,none"]
    assert 0.0 <= acc <= 1.0


def test_loglikelihood_output_survives_the_evaluator():
    from lmms_eval.api.instance import GenerationResult, unwrap_generation_output

    assert isinstance(unwrap_generation_output((0.5, True))[0], str)  # the upstream bug, still there
    assert unwrap_generation_output(GenerationResult(text=(0.5, True)))[0] == (0.5, True)  # our way round it


def test_dry_run_prints_the_hub_command(capsys):
    assert main(["run", "--model", "llava-hf/llava-1.5-7b-hf", "--suite", "paper", "--out", "runs/x", "--dry-run"]) == 0
    cmd = capsys.readouterr().out
    assert "-m lmms_eval --model llava_hf" in cmd and "device=cuda" in cmd
    assert "--tasks mme,mmmu_val,mmvet,gqa,chartqa,pope,nocaps_val,textvqa_val" in cmd


@pytest.mark.parametrize("argv, message", [
    (["--model", "/nonexistent/llava", "--suite", "local", "--data", "w"], "directory not found"),
    (["--model", ".", "--suite", "local", "--data", "w"], "no config.json"),
    (["--model", "m", "--suite", "nosuch"], "unknown suite 'nosuch'; known: llava15, local, paper"),
    (["--model", "m", "--suite", "local", "--tasks", "synth_pope,pope"], "unknown task(s) pope"),
])
def test_usage_errors(argv, message, tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path / "o"), *argv]) == 2
    assert message in capsys.readouterr().err


def test_local_suite_needs_a_world(tiny_llava_dir, tmp_path, capsys):
    assert main(["run", "--model", str(tiny_llava_dir), "--suite", "local", "--out", str(tmp_path)]) == 2
    assert "--data" in capsys.readouterr().err


def test_lmms_eval_failure_is_reported(tiny_world, tmp_path, capsys, monkeypatch):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # loads as no known model type: lmms-eval fails, exits 0
    monkeypatch.setattr("clips_llava_eval.cli._check_model", lambda *a: None)  # past the up-front model-dir check
    rc = main(["run", "--model", str(broken), "--suite", "local", "--data", str(tiny_world),
               "--out", str(tmp_path / "o"), "--tasks", "synth_gqa", "--limit", "1"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "lmms-eval failed (exit code 0 but no results JSON)" in err


def test_prepare_counts_skipped_rows_and_writes_an_include_dir(tmp_path, capsys):
    from tests.eval_helpers import make_eval_world

    world = make_eval_world(tmp_path / "world")
    with open(world / "eval/gqa.jsonl", "a") as f:
        f.write('{"question_id": "x", "image": "images/missing.png", "question": "?", "answer": "a"}\nnot json\n')
    assert main(["prepare", "--data", str(world), "--out", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    assert "synth_gqa: skipped 2 unusable row(s)" in out and "synth_gqa: 4 samples" in out
    assert "synth_mme: 8 samples" in out
    override = (tmp_path / "data/synth_gqa.yaml").read_text()
    assert "eval/tasks/synth_gqa.yaml" in override and "test: synth_gqa.parquet" in override
    assert main(["prepare", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "d2")]) == 2


def test_blind_control_keeps_every_question_and_shows_one_image(tiny_world, tmp_path):
    import datasets

    from clips_llava_eval.data import prepare

    real, blind = tmp_path / "real", tmp_path / "blind"
    tasks = ["synth_pope", "synth_gqa", "synth_caption"]
    assert prepare(tiny_world, real, tasks) == prepare(tiny_world, blind, tasks, blind=True)
    for task in tasks:
        r = datasets.load_dataset("parquet", data_files=str(real / f"{task}.parquet"), split="train")
        b = datasets.load_dataset("parquet", data_files=str(blind / f"{task}.parquet"), split="train")
        r_images = [x["bytes"] for x in r.cast_column("image", datasets.Image(decode=False))["image"]]
        b_images = [x["bytes"] for x in b.cast_column("image", datasets.Image(decode=False))["image"]]
        assert len(set(r_images)) > 1 and set(b_images) == {r_images[0]}  # one fixed image: the task's first
        for col in r.column_names:
            if col != "image":
                assert r[col] == b[col], (task, col)  # same questions, ids and answers: paired by doc_id


def test_blind_needs_a_local_suite(tmp_path, capsys):
    assert main(["run", "--model", "llava-hf/llava-1.5-7b-hf", "--suite", "paper", "--out", str(tmp_path / "o"),
                 "--blind", "--dry-run"]) == 2
    assert "--blind needs a local suite" in capsys.readouterr().err
