"""A LLaVA-1.5 JSON as a memory-mapped index: parsed once (per node, or once on shared storage), read by every rank.

    from llava_train.data_index import DataIndex
    index = DataIndex.open_or_build("playground/data/llava_v1_5_mix665k.json", "runs/stage2/data_index")
    index.record(17)      # the 17th record, a dict, decoded from the memory-mapped records file
    index.valid           # positions of the records that pass `samples.check_record` (int64 array)
    index.words           # LLaVA-1.5 word counts per record (int32 array; for length grouping)

mix665k is a 1 GB JSON list of 665k records. Loading it with `json.load` in every rank costs
minutes and gigabytes of Python objects per rank. Instead the list is streamed once (bounded
memory, `json.JSONDecoder.raw_decode` over a moving buffer), each record is checked structurally
(no tokenizer, no image access) and written as one UTF-8 JSON line into `records.bin`, with its
byte offset, word count, image flag and status (`ok` or a bad-sample reason) in small `.npy`
arrays. Every rank then memory-maps the files: start-up is a few `np.load(mmap_mode="r")` calls,
and the pages are shared between ranks and DataLoader workers of a node.

The index directory is named by a fingerprint of the source (absolute path, size, mtime) and the
format version, so an edited JSON gets a new index. It is written to a temporary directory and
renamed into place, so a killed build leaves nothing half-written and concurrent builders (one per
node on shared storage) end with one complete index. Unreadable input (not UTF-8, malformed JSON,
an object instead of a list, an empty list) raises `DataFileError` with one line naming the file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import mmap
import os
from collections import Counter
from pathlib import Path

import numpy as np

from clips_tower.io import atomic_dir
from llava_train.samples import SKIP_REASONS, BadSample, check_record, record_id, word_count

log = logging.getLogger(__name__)
VERSION = 1
STATUS = ["ok", *SKIP_REASONS]  # status code -> reason
_CHUNK = 1 << 22  # characters read per refill of the streaming parser


class DataFileError(ValueError):
    """The data file cannot be read as a JSON list of records (one line, names the file)."""


def iter_json_list(path: str | Path):
    """Yield (element, its own JSON text) for each element of a top-level JSON list, streaming (memory
    bounded by the largest element).

    Accepts a UTF-8 BOM (as `utf-8-sig` does). Raises DataFileError for anything else than a list."""
    path = Path(path)
    decoder = json.JSONDecoder()
    try:
        f = open(path, encoding="utf-8-sig")
    except OSError as e:
        raise DataFileError(f"{path}: cannot open: {e.strerror or e}") from None
    with f:
        buf, pos, eof, consumed_lines = "", 0, False, 0

        def refill():
            nonlocal buf, pos, eof, consumed_lines
            try:
                chunk = f.read(_CHUNK)
            except UnicodeDecodeError as e:
                raise DataFileError(f"{path}: not UTF-8 text ({e.reason} near byte {e.start})") from None
            consumed_lines += buf.count("\n", 0, pos)
            buf, pos = buf[pos:] + chunk, 0
            eof = not chunk

        def skip_ws():
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or eof:
                    return
                refill()

        def where() -> str:
            return f"line {consumed_lines + buf.count(chr(10), 0, pos) + 1}"

        refill()
        skip_ws()
        if pos >= len(buf):
            raise DataFileError(f"{path}: empty file; expected a JSON list of records")
        if buf[pos] != "[":
            kind = "an object" if buf[pos] == "{" else f"{buf[pos]!r}"
            raise DataFileError(f"{path}: expected a JSON list of records, found {kind} at the top level")
        pos += 1
        first = True
        while True:
            skip_ws()
            if pos >= len(buf):
                raise DataFileError(f"{path}: malformed JSON: the list is not closed (truncated file?)")
            if buf[pos] == "]":
                pos += 1
                skip_ws()
                if pos < len(buf):
                    raise DataFileError(f"{path}: malformed JSON: extra data after the list at {where()}")
                return
            if not first:
                if buf[pos] != ",":
                    raise DataFileError(f"{path}: malformed JSON: expected ',' or ']' at {where()}")
                pos += 1
                skip_ws()
            while True:
                try:
                    value, end = decoder.raw_decode(buf, pos)
                    if end < len(buf) or eof:  # a number cut at the buffer's end would parse short
                        break
                except json.JSONDecodeError as e:
                    if eof:
                        raise DataFileError(f"{path}: malformed JSON at {where()}: {e.msg}") from None
                except RecursionError:
                    raise DataFileError(f"{path}: the record at {where()} is nested too deeply to parse") from None
                refill()
            text, pos, first = buf[pos:end], end, False
            yield value, text


def fingerprint(data_path: str | Path) -> str:
    p = Path(data_path).resolve()
    st = p.stat()
    return hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}|v{VERSION}".encode()).hexdigest()[:16]


class DataIndex:
    """Memory-mapped records + per-record arrays; see the module docstring."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.meta = json.loads((self.root / "meta.json").read_text())
        self.offsets = np.load(self.root / "offsets.npy", mmap_mode="r")      # (N + 1,) int64
        self.words = np.load(self.root / "words.npy", mmap_mode="r")          # (N,) int32
        self.has_image = np.load(self.root / "has_image.npy", mmap_mode="r")  # (N,) bool
        self.status = np.load(self.root / "status.npy", mmap_mode="r")        # (N,) uint8, STATUS codes
        self.valid = np.flatnonzero(np.asarray(self.status) == 0)            # (K,) int64
        self._records = None

    def __len__(self) -> int:
        return len(self.status)

    def __getstate__(self):  # DataLoader workers started with spawn reopen the mmap
        state = dict(self.__dict__)
        state["_records"] = None
        return state

    def record(self, i: int):
        if self._records is None:
            with open(self.root / "records.bin", "rb") as f:
                self._records = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(
                    f.fileno()).st_size else b""
        return json.loads(self._records[int(self.offsets[i]):int(self.offsets[i + 1])])

    @property
    def bad_counts(self) -> dict[str, int]:
        return dict(self.meta["bad"])

    @property
    def first_bad_ids(self) -> dict[str, list]:
        return dict(self.meta["first_ids"])

    @classmethod
    def open_or_build(cls, data_path: str | Path, index_dir: str | Path) -> "DataIndex":
        data_path = Path(data_path)
        if not data_path.is_file():
            raise DataFileError(f"{data_path}: no such data file" if not data_path.exists()
                                else f"{data_path}: not a file")
        root = Path(index_dir) / f"{data_path.stem}-{fingerprint(data_path)}"
        if not (root / "meta.json").is_file():
            build(data_path, root)
        return cls(root)


def build(data_path: Path, root: Path, keep_ids: int = 5) -> Path:
    """Stream `data_path` into an index at `root` (temp dir + rename; a concurrent winner, another
    node on shared storage that finished first, is kept)."""
    with atomic_dir(root, is_complete=lambda r: (r / "meta.json").is_file()) as tmp:
        offsets, words, has_image, status = [0], [], [], []
        bad, first_ids = Counter(), {}
        with open(tmp / "records.bin", "wb") as out:
            for rec, text in iter_json_list(data_path):
                code, n_words = 0, 0
                try:
                    check_record(rec)
                    n_words = word_count(rec)
                except BadSample as e:
                    code = STATUS.index(e.reason)
                    bad[e.reason] += 1
                    ids = first_ids.setdefault(e.reason, [])
                    if len(ids) < keep_ids:
                        ids.append(record_id(rec))
                line = text.encode("utf-8", "surrogatepass") + b"\n"  # the record's own JSON text
                out.write(line)
                offsets.append(offsets[-1] + len(line))
                words.append(n_words)
                has_image.append(isinstance(rec, dict) and "image" in rec)
                status.append(code)
        if not status:
            raise DataFileError(f"{data_path}: the list of records is empty")
        np.save(tmp / "offsets.npy", np.asarray(offsets, dtype=np.int64))
        np.save(tmp / "words.npy", np.asarray(words, dtype=np.int32))
        np.save(tmp / "has_image.npy", np.asarray(has_image, dtype=bool))
        np.save(tmp / "status.npy", np.asarray(status, dtype=np.uint8))
        meta = {"version": VERSION, "source": str(data_path.resolve()), "records": len(status),
                "bad": dict(bad), "first_ids": first_ids}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    log.info("data index: %d records from %s -> %s (%s)", len(status), data_path, root,
             ", ".join(f"{r}={n}" for r, n in sorted(bad.items())) or "no structural problems")
    return root
