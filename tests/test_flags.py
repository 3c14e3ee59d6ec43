"""The one flag vocabulary: new spellings work and are the only ones in --help; old ones still work, with a warning."""
from __future__ import annotations

import pytest

from clips_tower.flags import renamed

# (main, argv prefix for --help, old flag, new flag)
HELP_CASES = [
    ("clips_tower.adapter.cli", ["export"], "--source", "--model"),
    ("clips_tower.adapter.cli", ["check"], "--source", "--model"),
    ("clips_tower.adapter.cli", ["check"], "--exported", "--out"),
    ("llava_train.lm.cli", ["init"], "--corpus", "--data"),
    ("llava_train.lm.cli", ["pretrain"], "--corpus", "--data"),
    ("llava_train.lm.cli", ["pretrain"], "--batch_size", "--batch-size"),
    ("llava_train.lm.cli", ["pretrain"], "--block_size", "--block-size"),
    ("llava_train.cli", ["merge-lora"], "--adapter", "--model"),
    ("llava_train.cli", ["projector", "export"], "--src", "--model"),
    ("llava_train.cli", ["projector", "import"], "--src", "--model"),
    ("llava_train.cli", ["check-data"], "--write_clean", "--write-clean"),
    ("clips_llava_eval.cli", ["run"], "--world", "--data"),
    ("clips_llava_eval.cli", ["prepare"], "--world", "--data"),
    ("clips_tower.probe", [], "--tower", "--model"),
    ("clips_tower.probe", [], "--images", "--scenes"),
    ("clips_tower.probe", [], "--json", "--out"),
]


def _main(module: str):
    import importlib

    return importlib.import_module(module).main


def test_renamed_rewrites_old_flags_and_warns_once(capsys):
    argv = ["--batch_size", "4", "--batch_size=8", "--steps", "2", "--", "--batch_size"]
    assert renamed(argv, {"--batch_size": "--batch-size"}, "clips-llava lm") == [
        "--batch-size", "4", "--batch-size=8", "--steps", "2", "--", "--batch_size"]
    assert capsys.readouterr().err == "clips-llava lm: --batch_size is deprecated; use --batch-size\n"


def test_renamed_leaves_new_spellings_alone(capsys):
    argv = ["--batch-size", "4", "--batch_sizes", "1", "--model", "x"]
    assert renamed(argv, {"--batch_size": "--batch-size"}, "p") == argv
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("module,sub,old,new", HELP_CASES, ids=[f"{m.split('.')[0]}-{'-'.join(s)}{o}" for m, s, o, _ in HELP_CASES])
def test_help_shows_only_the_new_spelling(module, sub, old, new, capsys):
    with pytest.raises(SystemExit) as e:
        _main(module)([*sub, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert new in out and old not in out.replace(new, "")


def test_tower_check_old_and_new_spellings(tmp_path, capsys):
    from clips_tower.adapter.cli import main

    missing = tmp_path / "no_tower"
    assert main(["check", "--source", "tiny", "--random-init", "--exported", str(missing)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[:2] == ["clips-llava tower: --source is deprecated; use --model",
                       "clips-llava tower: --exported is deprecated; use --out"]
    assert len(err) == 3 and "no config.json" in err[2] and str(missing) in err[2]
    assert main(["check", "--model", "tiny", "--random-init", "--out", str(missing)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "no config.json" in err[0] and "deprecated" not in err[0]


def test_lm_old_and_new_spellings(tmp_path, capsys):
    from llava_train.lm.cli import main

    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert main(["pretrain", "--model", "m", "--corpus", "w", "--out", str(a_file),
                 "--batch_size", "2", "--block_size", "8"]) == 2
    err = capsys.readouterr().err
    assert "clips-llava lm: --corpus is deprecated; use --data\n" in err
    assert "clips-llava lm: --batch_size is deprecated; use --batch-size\n" in err
    assert "clips-llava lm: --block_size is deprecated; use --block-size\n" in err
    assert "is a file" in err
    assert main(["pretrain", "--model", "m", "--data", "w", "--out", str(a_file),
                 "--batch-size", "2", "--block-size", "8"]) == 2
    err = capsys.readouterr().err
    assert "deprecated" not in err and "is a file" in err


def test_lm_old_spelling_reaches_the_same_arguments(monkeypatch, tmp_path, capsys):
    from llava_train.lm import build
    from llava_train.lm.cli import main

    seen = []
    monkeypatch.setattr(build, "pretrain_lm", lambda *a, **k: seen.append((a, k)) or
                        {"first_loss": 1.0, "last_loss": 0.5, "steps": 1})
    out = str(tmp_path / "lm")
    assert main(["pretrain", "--model", "m", "--corpus", "w", "--out", out, "--batch_size", "3", "--block_size", "9"]) == 0
    assert main(["pretrain", "--model", "m", "--data", "w", "--out", out, "--batch-size", "3", "--block-size", "9"]) == 0
    assert seen[0] == seen[1] and seen[0][0] == ("m", "w", out)
    assert seen[0][1]["batch_size"] == 3 and seen[0][1]["block_size"] == 9


@pytest.mark.parametrize("argv,old", [
    (["merge-lora", "--adapter", "{missing}", "--out", "{out}"], "--adapter"),
    (["projector", "export", "--src", "{missing}", "--out", "{out}.safetensors"], "--src"),
])
def test_llava_old_and_new_spellings(argv, old, tmp_path, capsys):
    from llava_train.cli import main

    fill = {"missing": str(tmp_path / "missing"), "out": str(tmp_path / "out")}
    old_argv = [a.format(**fill) for a in argv]
    assert main(old_argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"clips-llava llava: {old} is deprecated; use --model" and len(err) == 2 and "missing" in err[1]
    assert main([a if a != old else "--model" for a in old_argv]) == 2
    new_err = capsys.readouterr().err.splitlines()
    assert new_err == err[1:]


def test_eval_prepare_old_and_new_spellings(tmp_path, capsys):
    from clips_llava_eval.cli import main

    assert main(["prepare", "--world", str(tmp_path / "nothing"), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "clips-llava eval: --world is deprecated; use --data" and len(err) == 2
    assert main(["prepare", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "d")]) == 2
    assert capsys.readouterr().err.splitlines() == err[1:]


def test_probe_old_and_new_spellings(monkeypatch, tmp_path, capsys):
    from clips_tower import probe

    seen = []
    monkeypatch.setattr(probe, "probe", lambda *a, **k: seen.append((a, k)) or {})
    assert probe.main(["--tower", "T", "--images", "7", "--json", str(tmp_path / "a.json")]) == 0
    err = capsys.readouterr().err
    for old, new in (("--tower", "--model"), ("--images", "--scenes"), ("--json", "--out")):
        assert f"python -m clips_tower.probe: {old} is deprecated; use {new}\n" in err
    assert probe.main(["--model", "T", "--scenes", "7", "--out", str(tmp_path / "b.json")]) == 0
    assert "deprecated" not in capsys.readouterr().err
    assert seen[0] == seen[1] == (("T",), {"images": 7, "image_size": None, "seed": 0, "head": "linear"})
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text() == "{}"


def test_check_data_write_clean_old_spelling(capsys):
    from llava_train.check_data import _own_args

    old, rest = _own_args(["--write_clean", "c.json", "--data_path", "d.json"])
    assert old.write_clean == "c.json" and rest == ["--data_path", "d.json"]
    assert capsys.readouterr().err == "clips-llava llava check-data: --write_clean is deprecated; use --write-clean\n"
    new, rest = _own_args(["--write-clean", "c.json", "--data_path", "d.json"])
    assert new.write_clean == "c.json" and rest == ["--data_path", "d.json"]
    assert capsys.readouterr().err == ""
