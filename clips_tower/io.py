"""File-system helpers every package shares: atomic writes of files and directories, file hashes,
and the exact-key registry lookup with its one error message.

    from clips_tower.io import atomic_dir, atomic_path, atomic_write, lookup, sha256_file
    atomic_write(out / "report.json", json.dumps(report))  # readers see the old file or the new one
    with atomic_path(out / "model.safetensors") as tmp:    # for writers that take a path
        save_file(state, str(tmp))
    with atomic_dir(out / "export") as tmp:                # a whole directory, renamed into place
        (tmp / "config.json").write_text("{}")
    spec = lookup(TOWERS, name, "tower")                    # ValueError: unknown tower 'x'; known: a, b

One naming scheme: a target's temporary name is `.tmp-NAME-PID-RANDOM` beside it (same directory,
so the final rename is atomic; hidden, so globs for real outputs do not see it; unique, so processes
on several nodes sharing storage never write into each other's), and a directory being replaced is
moved aside to `.old-NAME-PID-RANDOM` until the new one is in place. Files and directories
are fsynced before the rename and the parent directory after it, so a crash leaves the old version
or the new one, never a torn one.

It lives in clips_tower, the lowest layer: llava_train and eval already import clips_tower, so all
three packages use this one module. Import it by name (`from clips_tower.io import ...`).
"""
from __future__ import annotations

import glob
import hashlib
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

CHUNK = 1 << 20  # bytes read at a time when hashing

# The repository checkout this package runs from (an editable install, as `make install` does).
# configs/ and scripts/ are read from here: no wheel ships them.
CHECKOUT = Path(__file__).resolve().parents[1]


# ---- names and small operations ----

def _beside(path: str | Path, kind: str) -> Path:
    path = Path(path)
    return path.with_name(f".{kind}-{path.name}-{os.getpid()}-{secrets.token_hex(4)}")


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name for a write of `path`: `.tmp-NAME-PID-RANDOM` in the same directory."""
    return _beside(path, "tmp")


def old_path(path: str | Path) -> Path:
    """A fresh name for a directory being replaced, until the new one is in place: `.old-NAME-PID-RANDOM`."""
    return _beside(path, "old")


def temp_leftovers(path: str | Path) -> list[Path]:
    """Temporary names of `path` that writers killed mid-write left behind (`.tmp-NAME-*`)."""
    path = Path(path)
    return sorted(path.parent.glob(f".tmp-{glob.escape(path.name)}-*"))


def remove(path: str | Path) -> None:
    """Delete a file, link or directory tree; nothing there is fine."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def fsync_path(path: str | Path) -> None:
    """fsync one file or directory, best effort (a filesystem without fsync is not an error)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    """fsync every file and directory under `root`."""
    for dirpath, _, files in os.walk(root):
        for f in files:
            fsync_path(Path(dirpath) / f)
        fsync_path(dirpath)


# ---- files ----

@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield the temporary path to write; on success it replaces `path`, on failure it is deleted.
    For writers that take a file name (safetensors, torch.save, parquet). The parent must exist."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        remove(tmp)
        raise
    fsync_path(path.parent)


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs) -> Iterator:
    """`open(path, mode)` through a temporary file that replaces `path` once closed without error."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def atomic_write(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (str as UTF-8, or bytes) to `path` atomically; returns `path`."""
    if isinstance(data, bytes):
        with atomic_open(path, "wb") as f:
            f.write(data)
    else:
        with atomic_open(path, "w", encoding="utf-8") as f:
            f.write(data)
    return Path(path)


def save_figure(fig, path: str | Path, **kwargs) -> Path:
    """`fig.savefig` atomically; the format comes from `path`'s suffix (the temporary name has none)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or None, **kwargs)
    return path


# ---- directories ----

def replace_dir(src: str | Path, dst: str | Path, old: str | Path | None = None) -> Path:
    """Move the complete directory `src` to `dst` (fsynced first). An existing `dst` is renamed to
    `old` (default `old_path(dst)`) and deleted only once `src` is in place."""
    src, dst = Path(src), Path(dst)
    old = Path(old) if old is not None else old_path(dst)
    fsync_tree(src)
    displaced = dst.exists() or dst.is_symlink()
    if displaced:
        remove(old)
        os.rename(dst, old)
    os.rename(src, dst)
    fsync_path(dst.parent)
    if displaced:
        remove(old)
    return dst


@contextmanager
def atomic_dir(path: str | Path, *, is_complete: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a fresh temporary directory beside `path` (parents created); once the block ends
    without error it becomes `path` (`replace_dir`), otherwise it is deleted.

    With `is_complete`, a `path` that another process finished meanwhile (the rename fails and
    `is_complete(path)` holds) is kept and ours dropped, instead of being replaced."""
    path = Path(path)
    tmp = temp_path(path)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        if is_complete is None:
            replace_dir(tmp, path)
        else:
            fsync_tree(tmp)
            try:
                os.rename(tmp, path)
            except OSError:
                if not is_complete(path):
                    raise
            fsync_path(path.parent)
    finally:
        remove(tmp)


# ---- hashes ----

def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


# ---- registries ----

def unknown_message(what: str, name, known: Iterable, label: str = "known") -> str:
    """`unknown {what} {name!r}; {label}: a, b, c`: the one wording for a name not in a registry."""
    return f"unknown {what} {name!r}; {label}: {', '.join(map(str, known))}"


def check_known(name, known, what: str, *, error: type[Exception] = ValueError, label: str = "known") -> None:
    """Raise `error(unknown_message(...))` unless `name` is in `known` (exact match)."""
    if name not in known:
        raise error(unknown_message(what, name, known, label))


def lookup(table, name, what: str, *, error: type[Exception] = ValueError, label: str = "known"):
    """`table[name]` for an exact key, else `error` naming `what` and listing the known keys."""
    check_known(name, table, what, error=error, label=label)
    return table[name]
