"""`clips-llava synth` as a user runs it: success, --help, and every bad input (exit 2, one line, nothing written).

    HF_HUB_OFFLINE=1 .venv/bin/pytest -q tests/test_world_cli.py
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llava_train.pipeline.cli import main as clips_llava
from clips_tower.world.cli import main
from tests.world_helpers import tree


def test_synth_writes_a_world_and_overwrites_only_with_the_flag(tmp_path: Path, capsys):
    out = tmp_path / "nested" / "world"
    assert clips_llava(["synth", "--out", str(out), "--preset", "tiny", "--seed", "5",
                        "--set", "pretrain=20", "--set", "shard_size=8"]) == 0
    manifest = json.loads((out / "MANIFEST.json").read_text())
    assert manifest["seed"] == 5 and manifest["counts"]["pretrain"] == 20
    assert manifest["counts"]["pretrain_shards"] == 3
    assert "wrote synthetic world 'tiny'" in capsys.readouterr().out
    before = tree(tmp_path)
    assert main(["--out", str(out), "--preset", "tiny"]) == 2  # non-empty, no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert tree(tmp_path) == before
    assert main(["--out", str(out), "--preset", "tiny", "--seed", "6", "--overwrite"]) == 0
    assert json.loads((out / "MANIFEST.json").read_text())["seed"] == 6
    assert sorted(p.name for p in (tmp_path / "nested").iterdir()) == ["world"]  # no staging/old dirs left


def test_help_ends_with_an_example(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert text.rstrip().splitlines()[-1].strip().startswith("clips-llava synth --out")


def _file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file.txt"
    path.write_text("x")
    return path


def _foreign_dir(tmp_path: Path) -> Path:
    path = tmp_path / "notes"
    path.mkdir()
    (path / "keep.txt").write_text("mine")
    return path


BAD = {
    "unknown preset": (lambda t: ["--out", str(t / "w"), "--preset", "huge"], "known: tiny, demo"),
    "zero image size": (lambda t: ["--out", str(t / "w"), "--set", "image_size=0"], "image_size"),
    "negative count": (lambda t: ["--out", str(t / "w"), "--set", "pretrain=-5"], "pretrain"),
    "unknown field": (lambda t: ["--out", str(t / "w"), "--set", "colours=3"], "known:"),
    "malformed --set": (lambda t: ["--out", str(t / "w"), "--set", "image_size"], "FIELD=N"),
    "negative seed": (lambda t: ["--out", str(t / "w"), "--seed", "-1"], "seed"),
    "non-integer seed": (lambda t: ["--out", str(t / "w"), "--seed", "x"], "seed"),
    "missing --out": (lambda t: ["--preset", "tiny"], "--out"),
    "unknown flag": (lambda t: ["--out", str(t / "w"), "--colour"], "unrecognized"),
    "out is a file": (lambda t: ["--out", str(_file(t))], "not a directory"),
    "parent is a file": (lambda t: ["--out", str(_file(t) / "w")], "not a writable directory"),
    "overwrite a non-world": (lambda t: ["--out", str(_foreign_dir(t)), "--overwrite"], "not a synthetic world"),
    "non-empty without --overwrite": (lambda t: ["--out", str(_foreign_dir(t))], "--overwrite"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path: Path, capsys):
    make_argv, needle = BAD[case]
    argv = make_argv(tmp_path)
    before = tree(tmp_path)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clips-llava synth: error:") and needle in lines[0], lines
    assert tree(tmp_path) == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses directory permissions")
def test_read_only_directory_is_refused(tmp_path: Path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        assert main(["--out", str(locked / "w")]) == 2
        assert "not a writable directory" in capsys.readouterr().err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
