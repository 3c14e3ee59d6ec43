"""The demo's step runner (`llava_train/pipeline/steps.py`): order, side-by-side steps, cores, resume, failure.

Each step here is a one-line Python subprocess that writes a file under OUT, so the whole file runs in
seconds; the real demo's steps are the same objects with longer commands (tests/test_demo_e2e.py).
"""
from __future__ import annotations

import json
import sys

import pytest

from llava_train.pipeline.steps import Step, StepFailed, run_steps


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _write(name: str, text: str = "x", after=None, wait_for: str | None = None) -> Step:
    """A step that writes OUT/<name> (its cwd is the repository root, so OUT comes in through env)."""
    wait = (f"import time\nfor _ in range(200):\n    if (out / {wait_for!r}).exists(): break\n    time.sleep(0.05)\n"
            f"else: raise SystemExit('never saw {wait_for}')\n") if wait_for else ""
    code = ("import os, pathlib\nout = pathlib.Path(os.environ['OUT'])\n"
            f"(out / {name + '.start'!r}).write_text('')\n{wait}"
            f"(out / {name!r}).write_text({text!r} + ' ' + os.environ.get('OMP_NUM_THREADS', '-'))\n")
    return Step(name, _py(code), [name], after=after)


@pytest.fixture
def out(tmp_path, monkeypatch):
    monkeypatch.setenv("OUT", str(tmp_path))
    return tmp_path


def test_steps_without_needs_run_one_after_another(out):
    # b reads a's output: without `after`, each step runs after the one listed before it
    steps = [_write("a"), Step("b", _py("import os, pathlib; o = pathlib.Path(os.environ['OUT']); "
                                        "(o / 'b').write_text((o / 'a').read_text())"), ["b"])]
    times = run_steps(steps, out, echo=False, jobs=4)
    assert set(times) == {"a", "b"} and (out / "b").read_text().startswith("x")


def test_independent_steps_run_side_by_side_and_share_the_cores(out, capsys):
    # each waits for the other to start: one after another, the first would give up (exit 1)
    steps = [_write("w", after=()), _write("a", after=("w",), wait_for="b.start"),
             _write("b", after=("w",), wait_for="a.start"), _write("c", after=("a", "b"))]
    run_steps(steps, out, echo=False, jobs=2, cores=4)
    assert (out / "a").read_text() == "x 2" and (out / "b").read_text() == "x 2"  # 4 cores over 2 steps
    assert (out / "c").read_text() == "x 4"  # alone again: every core
    printed = capsys.readouterr().out
    assert printed.count(": running (log: logs/") == 4 and printed.count(": done in ") == 4
    for f in out.glob("*.start"):
        f.unlink()
    with pytest.raises(StepFailed, match="'a' failed"):  # and one at a time they cannot both start
        run_steps(steps, out, fresh=True, echo=False, jobs=1)


def test_rerun_redoes_a_damaged_step_and_only_what_needs_it(out, capsys):
    steps = [_write("a", after=()), _write("b", after=("a",)), _write("c", after=("b",)), _write("d", after=("a",))]
    run_steps(steps, out, echo=False, jobs=2)
    (out / "b").write_text("damaged")
    capsys.readouterr()
    run_steps(steps, out, echo=False, jobs=2)
    printed = capsys.readouterr().out
    assert "] a: complete" in printed and "] d: complete" in printed
    assert "] b: running" in printed and "] c: running" in printed  # c reads b, so it is redone too
    assert (out / "b").read_text().startswith("x")


def test_a_failing_step_stops_the_run_after_its_neighbours_end_and_they_are_kept(out):
    bad = Step("bad", _py("raise SystemExit(3)"), ["bad"], after=())
    slow = Step("slow", _py("import os, pathlib, time; time.sleep(1.0); "  # still running when `bad` fails
                            "(pathlib.Path(os.environ['OUT']) / 'slow').write_text('x')"), ["slow"], after=())
    steps = [bad, slow, _write("later", after=("bad",))]
    with pytest.raises(StepFailed, match=r"'bad' failed \(exit 3\)"):
        run_steps(steps, out, echo=False, jobs=2)
    assert (out / "slow").exists() and not (out / "later").exists()
    recorded = json.loads((out / "demo_manifest.json").read_text())["steps"]
    assert "slow" in recorded and "bad" not in recorded  # a re-run skips `slow` and redoes `bad`


def test_a_step_that_exits_0_without_its_outputs_fails_and_says_so(out, capsys):
    quiet = Step("quiet", _py("pass"), ["quiet.txt"], after=())
    with pytest.raises(StepFailed, match=r"'quiet' left no quiet.txt; log: "):
        run_steps([quiet, _write("later", after=("quiet",))], out, echo=False, jobs=2)
    assert "] quiet: failed: exited 0 but left no quiet.txt" in capsys.readouterr().out
    assert not (out / "later").exists() and not (out / "demo_manifest.json").exists()  # nothing recorded


def test_needs_must_be_listed_earlier(out):
    with pytest.raises(ValueError, match="not listed before it"):
        run_steps([_write("a", after=("b",)), _write("b")], out, echo=False)


def test_demo_jobs_must_be_positive(tmp_path, capsys):
    from llava_train.pipeline import demo

    assert demo.main(["--out", str(tmp_path / "d"), "--jobs", "0"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_demo_steps_name_what_they_read(tmp_path):
    from llava_train.pipeline import demo

    steps = {s.name: s for s in demo.build_steps(demo.get_preset("demo"), tmp_path, 0)}
    # each tower's LLaVA waits for the LM and its own tower only, so the three towers' stages run side by side
    assert steps["stage1-clips"].after == ("lm-pretrain", "export-clips")
    assert steps["stage2-existence-clip-web"].after == ("stage1-clip-web",)
    assert steps["lm-init"].after == ("world",)  # beside the towers' pretraining
    assert set(steps["report"].after) == {n for n in steps if n.startswith("eval-")}


def test_stage2_starts_on_the_existence_conversations_then_trains_the_full_mix_from_that_llava(tmp_path):
    from llava_train.pipeline import demo

    preset = demo.get_preset("demo")
    steps = {s.name: s for s in demo.build_steps(preset, tmp_path, 0)}
    first, full = steps["stage2-existence-clips"], steps["stage2-clips"]
    arg = lambda s, flag: s.argv[len(s.argv) - 1 - s.argv[::-1].index(flag) + 1]  # the last one wins
    # the same stage script and config, from stage 1's projector, on the existence subset alone, for its own steps
    assert first.argv[:4] == full.argv[:4] and first.argv[1].endswith("finetune.sh")
    assert arg(first, "--pretrain_mm_mlp_adapter") == str(tmp_path / "llava" / "clips" / "stage1")
    assert arg(first, "--data_path") == str(tmp_path / "world" / "llava" / "stage2_existence.json")
    assert arg(first, "--max_steps") == str(preset.existence_steps) and preset.existence_steps > 0
    assert first.after == ("stage1-clips",) and full.after == ("stage2-existence-clips",)
    # the full mix loads that LLaVA dir whole: no tower or projector to assemble it from again
    assert arg(full, "--model_name_or_path") == str(tmp_path / "llava" / "clips" / "stage2-existence")
    assert "--vision_tower" not in full.argv and "--pretrain_mm_mlp_adapter" not in full.argv
    assert arg(full, "--data_path") == str(tmp_path / "world" / "llava" / "stage2.json")
    assert arg(full, "--seed") == arg(first, "--seed") == "0"
    # without the phase, stage 2 assembles its LLaVA from the LM, the tower and stage 1's projector
    import dataclasses

    plain = {s.name: s for s in demo.build_steps(dataclasses.replace(preset, existence_steps=0), tmp_path, 0)}
    assert not any(n.startswith("stage2-existence-") for n in plain)
    assert arg(plain["stage2-clips"], "--model_name_or_path") == str(tmp_path / "lm")
    assert arg(plain["stage2-clips"], "--vision_tower") == str(tmp_path / "hf-towers" / "clips")


def test_the_stage2_curve_counts_the_full_mix_on_from_the_existence_phase():
    from llava_train.pipeline.curves import stage2_curve

    phases = {"stage2-existence": [(10, 0.9), (20, 0.5)], "stage2": [(10, 1.4), (20, 1.1)], "stage1": [(10, 3.0)]}
    assert stage2_curve(phases) == ([(10, 0.9), (20, 0.5), (30, 1.4), (40, 1.1)], 20)
    assert stage2_curve({"stage2": [(10, 1.4)]}) == ([(10, 1.4)], None)
