"""Deterministic writers for the synthetic world: PNG bytes, content hashes, webdataset shards,
JSON files, and the output-directory checks that let generation fail before writing anything.

Same inputs give byte-identical files: PNGs use fixed encoder settings and no metadata chunks,
tar members are written in sorted order with a fixed mtime, owner and mode.

    check_out_dir(Path("runs/world"), overwrite=False)   # WorldError on unusable --out
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

from PIL import Image

from clips_tower.io import replace_dir, temp_path

TAR_MTIME = 946684800  # 2000-01-01T00:00:00Z: fixed so shards are byte-identical across runs


class WorldError(ValueError):
    """Bad input to the world generator (unknown preset, bad size, unusable output directory)."""


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def content_hash(image: Image.Image) -> str:
    """sha256 of the decoded pixels (mode, size, RGB bytes): encoder-independent image identity."""
    h = hashlib.sha256(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def write_shards(directory: Path, samples: list[dict], shard_size: int) -> list[Path]:
    """webdataset shards shard-000000.tar, ...; each sample is {"__key__": str, ext: bytes}."""
    import webdataset as wds  # imported here: it pulls in torch, which render workers do not need

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for start in range(0, len(samples), shard_size):
        path = directory / f"shard-{start // shard_size:06d}.tar"
        with open(path, "wb") as f, wds.TarWriter(f, encoder=False, mtime=TAR_MTIME, user="synth",
                                                  group="synth", mode=0o644) as tar:
            for sample in samples[start:start + shard_size]:
                tar.write(sample)
        paths.append(path)
    return paths


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_out_dir(out: Path, overwrite: bool) -> Path:
    """Validate --out before anything is written; returns the absolute path.

    Refuses a file, a non-empty directory without `overwrite`, a non-empty directory that is not
    a previous world (no MANIFEST.json; so `--overwrite` cannot wipe an unrelated folder), and a
    location whose nearest existing ancestor is not a writable directory.
    """
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise WorldError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise WorldError(f"--out {out} is not empty; pass --overwrite to replace a previous world")
        if not (out / "MANIFEST.json").is_file():
            raise WorldError(f"refusing to overwrite {out}: it is not a synthetic world (no MANIFEST.json)")
    anchor = _nearest_existing(out.parent)
    if not anchor.is_dir() or not os.access(anchor, os.W_OK | os.X_OK):
        raise WorldError(f"cannot write under {anchor}: not a writable directory")
    return out


def staging_dir(out: Path) -> tuple[Path, list[Path]]:
    """A fresh temporary directory next to `out` (same filesystem, so the final rename is atomic).

    Returns it with the parent directories this call created, so a failed run can remove them.
    OSError (read-only or missing filesystem, permissions) becomes a one-line WorldError.
    """
    created = []
    parent = out.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    try:
        staged = temp_path(out)
        staged.mkdir(parents=True)
        return staged, created
    except OSError as e:
        remove_empty(created)
        raise WorldError(f"cannot write under {out.parent}: {e.strerror or e}") from None


def remove_empty(dirs: list[Path]) -> None:
    """Remove directories created for a run that failed, deepest first, if still empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            pass


def commit_dir(staged: Path, out: Path) -> None:
    """Move a fully written world into place; an older world at `out` is removed only afterwards."""
    replace_dir(staged, out)
