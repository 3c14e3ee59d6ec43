"""CLIPS pretraining data: webdataset shards -> batches of images, web / partial / full caption ids.

    shards = list_shards("runs/world/pretrain")            # or a world dir, a .tar, a brace pattern
    stream = ShardStream(shards, tokenizer, transform, cfg, num_queries=48, prefix_len=32, rank=0, world_size=1)
    for batch in stream: ...                               # infinite; stream.consumed = raw samples read

A sample is `{key}.png` (or jpg/webp) plus its captions, read from the sources the run config's
`data.web_caption_key` / `data.synthetic_caption_key` name (see `clips_tower.config`). The
defaults are the synthetic world's layout, `{key}.txt` and `{key}.json` with "web_caption" and
"synthetic_caption"; `configs/clips/recap-datacomp.yaml` reads img2dataset shards of
Recap-DataComp-1B (`{key}.txt` = org_caption, json "re_caption" and "status").

Each rank reads its own subset of shards, resampled with a seed fixed by (seed, rank), through a
seeded shuffle buffer; the token-reduction rng of a sample is derived from (seed, rank, its index
in the stream). The stream is therefore a pure function of (seed, rank, position): `start=n`
replays it without decoding the first n samples, which is how `--resume` continues with the exact
same data. Bad samples (corrupt image, missing caption, unreadable json, a json status other than
`data.require_json_status`) are skipped, counted by reason and their keys kept.
"""
from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
import webdataset as wds

from clips_tower.config import IMAGE_EXTS, CaptionSource, ClipsRunConfig, DataCfg
from clips_tower.images import load_rgb
from clips_tower.text_reduction import get_strategy, split_sentences
from clips_tower.tokenizer import TextTokenizer

MAX_KEPT_KEYS = 100


def list_shards(data: str | Path) -> list[str]:
    """Shard paths for a world dir (its `pretrain/`), a dir of .tar files, one .tar, or a brace pattern."""
    p = Path(data)
    if p.is_dir():
        root = p / "pretrain" if (p / "pretrain").is_dir() else p
        shards = sorted(str(s) for s in root.glob("*.tar"))
    elif p.is_file():
        shards = [str(p)]
    else:
        shards = [s for s in wds.shardlists.expand_urls(str(data)) if Path(s).is_file()]
    if not shards:
        raise ValueError(f"no webdataset shards (.tar) found at {data}")
    return shards


def _describe(sources: tuple[CaptionSource, ...]) -> str:
    return " or ".join(src.describe() for src in sources)


class CaptionReader:
    """Reads a raw sample's (web, synthetic) captions from the sources a `DataCfg` names.

    `meta()` parses `{key}.json` ({} when absent; ValueError / UnicodeDecodeError when it is not a
    json object), `captions()` returns both captions stripped ("" when no source has one; ValueError
    when a json field holds something other than a string or null).
    """

    def __init__(self, data: DataCfg | None = None):
        data = data or DataCfg()
        self.web, self.synthetic = data.web_sources, data.synthetic_sources
        self.status = data.require_json_status
        self.uses_json = self.status is not None or any(s.kind == "json" for s in (*self.web, *self.synthetic))

    def meta(self, sample: dict) -> dict:
        if not self.uses_json or "json" not in sample:
            return {}
        meta = json.loads(sample["json"])
        if not isinstance(meta, dict):
            raise ValueError("the sample's json is not an object")
        return meta

    def status_ok(self, meta: dict) -> bool:
        return self.status is None or meta.get("status") == self.status

    @staticmethod
    def _read(sample: dict, meta: dict, src: CaptionSource) -> str:
        if src.kind == "json":
            value = meta.get(src.name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"json field {src.name!r} is not a string")
            return (value or "").strip()
        raw = sample.get(src.name)
        if raw is None:
            return ""
        return (raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)).strip()

    def _first(self, sample: dict, meta: dict, sources: tuple[CaptionSource, ...]) -> str:
        for src in sources:
            text = self._read(sample, meta, src)
            if text:
                return text
        return ""

    def captions(self, sample: dict, meta: dict | None = None) -> tuple[str, str]:
        meta = self.meta(sample) if meta is None else meta
        return self._first(sample, meta, self.web), self._first(sample, meta, self.synthetic)


def check_caption_fields(shards: list[str], cfg: ClipsRunConfig) -> None:
    """Fail before training when the first shard has no sample with a caption field the method needs."""
    reader = CaptionReader(cfg.data)
    seen = ok = web = syn = 0
    for sample in wds.DataPipeline(wds.SimpleShardList(shards[:1]), wds.tarfile_to_samples(handler=wds.warn_and_continue)):
        seen += 1
        try:
            meta = reader.meta(sample)
            if not reader.status_ok(meta):
                continue
            ok += 1
            w, s = reader.captions(sample, meta)
        except (ValueError, UnicodeDecodeError):
            continue
        web, syn = web + bool(w), syn + bool(s)
    if seen == 0:
        raise ValueError(f"shard {shards[0]} holds no samples")
    if ok == 0:
        raise ValueError(f"no sample in {shards[0]} has json \"status\" {reader.status!r} (data.require_json_status)")
    if cfg.needs_web and web == 0:
        raise ValueError(f"no sample in {shards[0]} has a web caption ({_describe(reader.web)}; "
                         f"data.web_caption_key), which this method needs")
    if cfg.needs_synthetic and syn == 0:
        raise ValueError(f"no sample in {shards[0]} has a synthetic caption ({_describe(reader.synthetic)}; "
                         f"data.synthetic_caption_key), which this method needs")


@dataclass
class Batch:
    keys: list[str]
    images: torch.Tensor  # (B, 3, H, W)
    web_ids: torch.Tensor | None  # (B, T_web) web-caption view
    syn_ids: torch.Tensor | None  # (B, T_syn) partial synthetic-caption view
    cap_web_ids: torch.Tensor | None  # (B, T) captioner prefix
    cap_web_valid: torch.Tensor | None  # (B, T) bool
    target_valid: torch.Tensor | None  # (B, L) bool
    targets: torch.Tensor | None  # (N_valid,) full synthetic caption tokens at the valid positions

    def to(self, device: torch.device) -> "Batch":
        moved = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return Batch(**moved)


class ShardStream:
    def __init__(self, shards: list[str], tokenizer: TextTokenizer, transform, cfg: ClipsRunConfig,
                 num_queries: int = 0, prefix_len: int = 0, rank: int = 0, world_size: int = 1, start: int = 0):
        # disjoint shards per rank when there are enough; otherwise all shards, rank-seeded resampling
        self.shards = shards[rank::world_size] if len(shards) >= world_size else list(shards)
        self.tok, self.transform, self.cfg = tokenizer, transform, cfg
        self.num_queries, self.prefix_len = num_queries, prefix_len
        self.rank, self.start = rank, start
        self.reduce = get_strategy(cfg.method.strategy)
        self.reader = CaptionReader(cfg.data)
        self.consumed = start  # raw samples taken from the shuffled stream so far
        self.skipped: Counter = Counter()
        self.skipped_keys: list[str] = []

    def state(self) -> dict:
        """Where the stream stands (JSON-able): a checkpoint's data state, replayed by `start=consumed`."""
        return {"consumed": self.consumed, "skipped": dict(self.skipped), "skipped_keys": self.skipped_keys}

    def _raw(self):
        seed, rank = self.cfg.run.seed, self.rank
        return iter(wds.DataPipeline(
            wds.ResampledShards(self.shards, seed=seed, worker_seed=lambda: rank, deterministic=True),
            wds.tarfile_to_samples(handler=wds.warn_and_continue),
            wds.shuffle(self.cfg.data.shuffle_buffer, initial=self.cfg.data.shuffle_initial,
                        rng=random.Random(f"shuffle-{seed}-{rank}")),
        ))

    def _skip(self, key: str, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.skipped_keys) < MAX_KEPT_KEYS:
            self.skipped_keys.append(f"{key} ({reason})")

    def _decode(self, sample: dict, index: int) -> dict | None:
        key = sample.get("__key__", f"#{index}")
        meta = None
        if self.reader.status is not None:  # checked first: a failed download has no usable image
            try:
                meta = self.reader.meta(sample)
            except (ValueError, UnicodeDecodeError):
                return self._skip(key, "unreadable captions")
            if not self.reader.status_ok(meta):
                return self._skip(key, f"json status not {self.reader.status!r}")
        ext = next((e for e in IMAGE_EXTS if e in sample), None)
        if ext is None:
            return self._skip(key, "no image")
        try:
            image = self.transform(load_rgb(sample[ext]))
        except Exception:  # any undecodable image is a counted skip, never a crash
            return self._skip(key, "corrupt image")
        try:
            web, syn = self.reader.captions(sample, meta)
        except (ValueError, UnicodeDecodeError):
            return self._skip(key, "unreadable captions")
        if self.cfg.needs_web and not web:
            return self._skip(key, "missing web caption")
        if self.cfg.needs_synthetic and not syn:
            return self._skip(key, "missing synthetic caption")
        out = {"key": key, "image": image, "web": self.tok.encode(web) if web else []}
        if syn:
            sentences = [self.tok.encode(s) for s in split_sentences(syn)]
            rng = random.Random(f"reduce-{self.cfg.run.seed}-{self.rank}-{index}")
            out["partial"] = self.reduce(sentences, self.cfg.method.k, rng)
            full = ([t for s in sentences for t in s] + [self.tok.eos_id])[: self.num_queries]
            n = self.cfg.method.caption_positions
            out["full"] = full
            out["positions"] = sorted(rng.sample(range(len(full)), n)) if 0 < n < len(full) else range(len(full))
        return out

    def _collate(self, rows: list[dict]) -> Batch:
        tok, m = self.tok, self.cfg.method
        ctx = tok.context_length
        web_ids = syn_ids = cap_ids = cap_valid = target_valid = targets = None
        if "web" in m.views:
            web_ids = tok.pack([r["web"] for r in rows], None if tok.trailing_pad_invariant else ctx)
        if "synthetic" in m.views:
            fixed = ctx if m.strategy == "full" else min(ctx, m.k + tok.n_special)
            syn_ids = tok.pack([r["partial"] for r in rows], None if tok.trailing_pad_invariant else fixed)
        if m.captioner:
            prefix = [[tok.bos_id, *r["web"], tok.eos_id][: self.prefix_len] for r in rows]
            t = max(len(p) for p in prefix)
            cap_ids = torch.full((len(rows), t), tok.pad_id, dtype=torch.long)
            cap_valid = torch.zeros(len(rows), t, dtype=torch.bool)
            target_valid = torch.zeros(len(rows), self.num_queries, dtype=torch.bool)
            flat = []
            for i, (p, r) in enumerate(zip(prefix, rows)):
                cap_ids[i, : len(p)] = torch.tensor(p)
                cap_valid[i, : len(p)] = True
                pos = list(r["positions"])
                target_valid[i, pos] = True
                flat.extend(r["full"][j] for j in pos)
            targets = torch.tensor(flat, dtype=torch.long)
        return Batch([r["key"] for r in rows], torch.stack([r["image"] for r in rows]),
                     web_ids, syn_ids, cap_ids, cap_valid, target_valid, targets)

    def __iter__(self):
        rows, index = [], 0
        for sample in self._raw():
            index += 1
            if index <= self.start:
                continue  # replaying to the resume point: no decoding
            self.consumed = index
            row = self._decode(sample, index)
            if row is None:
                continue
            rows.append(row)
            if len(rows) == self.cfg.optim.batch_size:
                yield self._collate(rows)
                rows = []
