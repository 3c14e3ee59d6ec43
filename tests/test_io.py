"""The shared file-system helpers (clips_tower.io): atomic files and directories, file hashes and
the registry lookup's message.

    pytest -q tests/test_io.py
"""
from __future__ import annotations

import hashlib
import os

import pytest

from clips_tower import io as cio


class Boom(Exception):
    pass


def _names(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ---- files ----

def test_atomic_write_text_and_bytes_leave_only_the_target(tmp_path):
    text = tmp_path / "report.json"
    assert cio.atomic_write(text, '{"a": "é"}\n') == text
    assert text.read_text(encoding="utf-8") == '{"a": "é"}\n'
    blob = tmp_path / "weights.bin"
    cio.atomic_write(blob, b"\x00\x01\xff")
    assert blob.read_bytes() == b"\x00\x01\xff"
    cio.atomic_write(text, "second")  # replaces an existing file
    assert text.read_text() == "second"
    assert _names(tmp_path) == ["report.json", "weights.bin"]


def test_a_failure_mid_write_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("old")
    with pytest.raises(Boom):
        with cio.atomic_open(path, "w") as f:
            f.write("half of the new")
            f.flush()
            raise Boom
    assert path.read_text() == "old"
    with pytest.raises(Boom):
        with cio.atomic_path(path) as tmp:
            tmp.write_text("torn")
            raise Boom
    assert path.read_text() == "old"
    assert _names(tmp_path) == ["manifest.json"]


def test_a_failure_before_anything_is_written_creates_nothing(tmp_path):
    with pytest.raises(Boom):
        with cio.atomic_path(tmp_path / "new.safetensors"):
            raise Boom
    assert _names(tmp_path) == []


def test_temporary_names_are_hidden_unique_and_keep_no_suffix(tmp_path):
    target = tmp_path / "model.safetensors"
    a, b = cio.temp_path(target), cio.temp_path(target)
    assert a != b and a.parent == b.parent == tmp_path
    assert a.name.startswith(f".tmp-model.safetensors-{os.getpid()}-")
    assert not a.name.endswith(".safetensors")  # `*.safetensors` globs never see a write in progress
    assert cio.old_path(target).name.startswith(".old-model.safetensors-")


def test_temp_leftovers_finds_what_killed_writers_left(tmp_path):
    target = tmp_path / "files[1].json"
    left = [cio.temp_path(target), cio.temp_path(target)]
    for p in left:
        p.write_text("torn")
    cio.temp_path(tmp_path / "other.json").write_text("not ours")
    assert cio.temp_leftovers(target) == sorted(left)


def test_save_figure_writes_the_format_of_the_target_suffix(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png, svg = tmp_path / "curves.png", tmp_path / "curves.svg"
    cio.save_figure(fig, png, dpi=50)
    cio.save_figure(fig, svg)
    plt.close(fig)
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert b"<svg" in svg.read_bytes()[:1000]
    assert _names(tmp_path) == ["curves.png", "curves.svg"]


# ---- directories ----

def test_atomic_dir_replaces_a_directory_whole(tmp_path):
    out = tmp_path / "deep" / "export"
    with cio.atomic_dir(out) as tmp:  # parents are created
        assert tmp.parent == out.parent and not out.exists()
        (tmp / "a.txt").write_text("1")
        (tmp / "stale.txt").write_text("1")
    assert _names(out) == ["a.txt", "stale.txt"]
    with cio.atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("2")
    assert _names(out) == ["a.txt"] and (out / "a.txt").read_text() == "2"
    assert _names(out.parent) == ["export"]  # no .tmp-* or .old-* left


def test_a_failing_atomic_dir_keeps_the_old_directory(tmp_path):
    out = tmp_path / "checkpoint"
    out.mkdir()
    (out / "model.safetensors").write_text("old")
    with pytest.raises(Boom):
        with cio.atomic_dir(out) as tmp:
            (tmp / "model.safetensors").write_text("new, half written")
            raise Boom
    assert _names(out) == ["model.safetensors"] and (out / "model.safetensors").read_text() == "old"
    assert _names(tmp_path) == ["checkpoint"]


def test_atomic_dir_keeps_a_complete_winner_of_a_race(tmp_path):
    root = tmp_path / "index"

    def complete(p):
        return (p / "meta.json").is_file()

    with cio.atomic_dir(root, is_complete=complete) as tmp:
        (tmp / "meta.json").write_text("ours")
        root.mkdir()  # another process finished first
        (root / "meta.json").write_text("theirs")
    assert (root / "meta.json").read_text() == "theirs"
    assert _names(tmp_path) == ["index"]
    broken = tmp_path / "broken"
    with pytest.raises(OSError):
        with cio.atomic_dir(broken, is_complete=complete) as tmp:
            (tmp / "meta.json").write_text("ours")
            broken.mkdir()
            (broken / "partial").write_text("no meta.json")
    assert _names(broken) == ["partial"]
    assert _names(tmp_path) == ["broken", "index"]


def test_replace_dir_moves_the_old_one_to_the_given_name_and_deletes_it(tmp_path):
    src, dst = tmp_path / "staged", tmp_path / "checkpoint-4"
    for d, tag in ((src, "new"), (dst, "old")):
        d.mkdir()
        (d / "w").write_text(tag)
    old = tmp_path / ".old-checkpoint-4"
    (old / "junk").mkdir(parents=True)  # a leftover of a killed save under the same name
    assert cio.replace_dir(src, dst, old=old) == dst
    assert (dst / "w").read_text() == "new"
    assert _names(tmp_path) == ["checkpoint-4"]


# ---- hashes ----

def test_sha256_file_matches_hashlib_across_chunks(tmp_path):
    path = tmp_path / "blob"
    data = os.urandom(2 * cio.CHUNK + 12345)  # three reads, the last one short
    path.write_bytes(data)
    assert cio.sha256_file(path) == hashlib.sha256(data).hexdigest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert cio.sha256_file(empty) == hashlib.sha256(b"").hexdigest()


# ---- registries ----

def test_lookup_returns_the_entry_or_lists_the_known_keys():
    table = {"tiny": 1, "demo": 2, "clips-l14-336": 3}
    assert cio.lookup(table, "demo", "tower") == 2
    with pytest.raises(ValueError) as e:
        cio.lookup(table, "Tiny", "tower")  # exact keys only
    assert str(e.value) == "unknown tower 'Tiny'; known: tiny, demo, clips-l14-336"
    with pytest.raises(KeyError, match="known towers: tiny, demo"):
        cio.lookup(table, "huge", "tower", error=KeyError, label="known towers")


def test_check_known_accepts_any_collection():
    cio.check_known("pad", ("native", "pad"), "image_aspect_ratio")
    with pytest.raises(ValueError, match=r"^unknown image_aspect_ratio 'crop'; known: native, pad$"):
        cio.check_known("crop", ("native", "pad"), "image_aspect_ratio")
    assert cio.unknown_message("shape", 3, ["circle"]) == "unknown shape 3; known: circle"
