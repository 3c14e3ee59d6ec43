"""Generate the whole synthetic world into a directory: `generate_world(out, preset, seed)`.

    from clips_tower.world import generate_world
    manifest = generate_world("runs/world", preset="demo", seed=0)

Layout (a contract other parts of the project read): MANIFEST.json, corpus.txt, lookup.txt,
pretrain/shard-*.tar (webdataset), llava/{images,stage1.json,stage2.json,stage2_existence.json},
eval/{images,pope,gqa,mme,caption,textvqa,chartqa}.jsonl, eval/retrieval/dataset.json.
Everything is written to a staging directory beside `out` and renamed into place at the end,
so a failed or refused run leaves nothing behind. Every random draw comes from its own
generator seeded by (seed, stream, index[, attempt]), so output does not depend on the
number of worker processes. Eval streams never coincide with training streams ("other
seeds"), and an eval image whose pixels equal any training image's is resampled.

Phases of `_generate`: draw every item, render them, hold the eval images out (resample
collisions), build the LLaVA records and the eval splits, write the files, then the MANIFEST.
What each item kind is (sampler, renderer, file prefix, conversations) is `kinds.ITEM_KINDS`.
"""
from __future__ import annotations

import collections
import json
import logging
import multiprocessing
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clips_tower.io import sha256_file, unknown_message
from clips_tower.world import conversations, evalsets, questions
from clips_tower.world.captions import synthetic_caption, web_caption
from clips_tower.world.kinds import CONVERSATIONS, ITEM_KINDS
from clips_tower.world.presets import WorldPreset, get_preset
from clips_tower.world.scene import Scene, sample_scene
from clips_tower.world.writers import (WorldError, check_out_dir, commit_dir, content_hash, encode_png,
                                       remove_empty, staging_dir, write_bytes, write_json, write_jsonl,
                                       write_shards)

GENERATOR_VERSION = "4"  # 4: llava/stage2_existence.json; 3: name-matched training negatives, fresh look-up scenes; 2: lookup.txt, existence, "Yes"/"No"
log = logging.getLogger(__name__)

# stream -> id mixed into every seed. Training and eval ids never overlap.
STREAMS = {"pretrain": 1, "llava": 2, "text": 3, "chart": 4, "stage1": 5, "stage2": 6, "stage2-mix": 7, "lookup": 8}
EXISTENCE_FILE = "stage2_existence.json"  # under llava/: `existence_subset(stage2)`
LOOKUP_LINES_PER_PRETRAIN = 4  # lookup.txt: 4 lines per pretraining image (20000 on the demo world), each its own scene
STREAMS.update({f"eval-{t}": 100 + i for i, t in enumerate(evalsets.EVAL_TASKS)})
STREAMS.update({f"eval-{t}-questions": 200 + i for i, t in enumerate(evalsets.EVAL_TASKS)})


def rng_for(seed: int, stream: str, index: int, attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[stream], index, attempt])


def sample_item(kind: str, rng: np.random.Generator, p: WorldPreset):
    if kind not in ITEM_KINDS:
        raise ValueError(unknown_message("item kind", kind, ITEM_KINDS))
    return ITEM_KINDS[kind].sample(rng, p)


def render_png(job: tuple) -> tuple[bytes, str]:
    """Worker: (kind, item, size) -> (PNG bytes, content hash). Top-level so a process pool can pickle it."""
    kind, item, size = job
    image = ITEM_KINDS[kind].render(item, size)
    return encode_png(image), content_hash(image)


def render_all(items: list[tuple[str, object]], size: int, pool: ProcessPoolExecutor | None,
               workers: int) -> list[tuple[bytes, str]]:
    jobs = [(kind, item, size) for kind, item in items]
    if pool is None:
        return [render_png(j) for j in jobs]
    return list(pool.map(render_png, jobs, chunksize=max(1, len(jobs) // (8 * workers))))


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise WorldError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def generate_world(out_dir, preset: str | WorldPreset = "tiny", seed: int = 0, overwrite: bool = False,
                   workers: int | None = None, **overrides: int) -> dict:
    """Write the world for (preset, seed) to `out_dir`; returns the MANIFEST dict.

    `overrides` replace preset fields (e.g. image_size=48). Raises WorldError (a ValueError)
    on bad input before anything is written.
    """
    t0 = time.perf_counter()
    try:
        p = preset if isinstance(preset, WorldPreset) else get_preset(preset, **overrides)
        p.validate()
    except ValueError as e:
        raise WorldError(str(e)) from None
    seed = _check_seed(seed)
    out = check_out_dir(Path(out_dir), overwrite)
    staged, created = staging_dir(out)  # everything is written here, then renamed to `out`
    try:
        manifest = _generate(staged, out, p, seed, workers)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        remove_empty(created)
        raise
    log.info("synthetic world %s (seed %d) written to %s in %.1fs", p.name, seed, out, time.perf_counter() - t0)
    return manifest


@dataclass
class Drawn:
    """Every item of the world before rendering (phase 1)."""
    pretrain: list[tuple[Scene, str, str]]  # (scene, web caption, synthetic caption)
    llava: dict[str, list]  # item kind -> its LLaVA training items, ITEM_KINDS order
    eval_items: dict[str, list]  # eval task -> its held-out items

    @property
    def train_items(self) -> list[tuple[str, object]]:
        """(kind, item) of every training image: the pretrain scenes, then the LLaVA images."""
        return ([("scene", s) for s, _, _ in self.pretrain]
                + [(kind, item) for kind, items in self.llava.items() for item in items])

    @property
    def eval_order(self) -> list[tuple[str, int]]:
        return [(task, i) for task in self.eval_items for i in range(len(self.eval_items[task]))]


@dataclass
class Rendered:
    """PNG bytes and content hash of every image (phases 2-3)."""
    train: list[tuple[bytes, str]]  # in Drawn.train_items order
    eval: dict[tuple[str, int], tuple[bytes, str]]  # (task, index) -> PNG
    resampled: int = 0  # eval images drawn again because their pixels matched another image


def _generate(staged: Path, out: Path, p: WorldPreset, seed: int, workers: int | None) -> dict:
    drawn = _draw(p, seed)
    rendered = _render(drawn, p.image_size, workers)
    _hold_out(drawn, rendered, p, seed)
    stage1, stage2 = _llava_records(drawn, p, seed)
    eval_records = _eval_records(drawn, seed)
    counts = _write(staged, drawn, rendered, p, stage1, stage2, eval_records, _lookup(p, seed))
    manifest = _manifest(staged, p, seed, counts, rendered)
    write_json(staged / "MANIFEST.json", manifest)
    commit_dir(staged, out)
    return manifest


def _draw(p: WorldPreset, seed: int) -> Drawn:
    """Phase 1: training items (pretrain pairs, LLaVA images per kind) and held-out items ("eval-*" streams)."""
    pretrain = []
    for i in range(p.pretrain):
        rng = rng_for(seed, "pretrain", i)
        scene = sample_scene(rng, p.min_objects, p.max_objects)
        pretrain.append((scene, web_caption(scene, rng, i), synthetic_caption(scene, rng)))
    llava = {name: [k.sample(rng_for(seed, k.stream, i), p) for i in range(getattr(p, k.count))]
             for name, k in ITEM_KINDS.items()}
    eval_items = {task: [sample_item(kind, rng_for(seed, f"eval-{task}", i), p)
                         for i in range(getattr(p, f"{task}_images"))]
                  for task, (kind, _) in evalsets.EVAL_TASKS.items()}
    return Drawn(pretrain, llava, eval_items)


def _render(drawn: Drawn, size: int, workers: int | None) -> Rendered:
    """Phase 2: every image to PNG, in a process pool for large worlds."""
    train_items, order = drawn.train_items, drawn.eval_order
    if workers is None:
        workers = 1 if len(train_items) < 1000 else min(2, os.cpu_count() or 1)
    # spawn, not fork: callers (tests, trainers) may already run threaded torch.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    eval_jobs = [(evalsets.EVAL_TASKS[t][0], drawn.eval_items[t][i]) for t, i in order]
    try:
        pngs = render_all(train_items + eval_jobs, size, pool, workers)
    finally:
        if pool is not None:
            pool.shutdown()
    return Rendered(pngs[:len(train_items)], dict(zip(order, pngs[len(train_items):])))


def _hold_out(drawn: Drawn, rendered: Rendered, p: WorldPreset, seed: int) -> None:
    """Phase 3: resample any eval image whose pixels match a training image or another eval image."""
    seen = {h for _, h in rendered.train}
    for task, i in drawn.eval_order:
        kind, attempt = evalsets.EVAL_TASKS[task][0], 0
        while rendered.eval[(task, i)][1] in seen:
            attempt += 1
            rendered.resampled += 1
            if attempt > 100:
                raise WorldError(f"cannot draw a held-out {task} image distinct from training; enlarge image_size")
            item = sample_item(kind, rng_for(seed, f"eval-{task}", i, attempt), p)
            drawn.eval_items[task][i] = item
            rendered.eval[(task, i)] = render_png((kind, item, p.image_size))
        seen.add(rendered.eval[(task, i)][1])


def _llava_records(drawn: Drawn, p: WorldPreset, seed: int) -> tuple[list[dict], list[dict]]:
    """Phase 4: stage-1 caption pairs on the LLaVA scenes, and the stage-2 mix."""
    prefix = ITEM_KINDS["scene"].prefix
    stage1 = [conversations.stage1_record(i, f"{prefix}_{i:06d}.png", scene, rng_for(seed, "stage1", i))
              for i, scene in enumerate(drawn.llava["scene"])]
    return stage1, _stage2(seed, p, drawn.llava)


def _stage2(seed: int, p: WorldPreset, llava: dict) -> list[dict]:
    kinds = conversations.stage2_kinds(p.stage2, rng_for(seed, "stage2-mix", 0))
    used = collections.Counter()
    records = []
    for i, conv in enumerate(kinds):
        rng = rng_for(seed, "stage2", i)
        kind, turns, shown = CONVERSATIONS[conv]
        if shown:
            pool = llava[kind]
            k = used[kind] % len(pool)  # cycle through the images so each one is used
            used[kind] += 1
            item, image = pool[k], f"{ITEM_KINDS[kind].prefix}_{k:06d}.png"
        else:  # e.g. text_only: an imagined scene, described in words only
            item, image = ITEM_KINDS[kind].sample(rng, p), None
        records.append(conversations.stage2_record(i, conv, image, turns(item, rng)))
    return records


def _eval_records(drawn: Drawn, seed: int) -> dict:
    """Phase 5: the eval splits' records; POPE's "popular" negatives rank the training scenes' objects."""
    scenes = [s for s, _, _ in drawn.pretrain] + drawn.llava["scene"]
    popularity = collections.Counter(o.name for s in scenes for o in s.objects)
    ranked = [name for name, _ in sorted(popularity.items(), key=lambda kv: (-kv[1], kv[0]))]
    return {task: builder(drawn.eval_items[task], lambda i, t=task: rng_for(seed, f"eval-{t}-questions", i), ranked)
            for task, (_, builder) in evalsets.EVAL_TASKS.items()}


def _write(staged: Path, drawn: Drawn, rendered: Rendered, p: WorldPreset, stage1: list[dict],
           stage2: list[dict], eval_records: dict, lookup: list[str]) -> dict:
    """Phase 6: every file of the layout into the staging dir; returns the MANIFEST counts."""
    samples = []
    for i, ((scene, web, syn), (png, _)) in enumerate(zip(drawn.pretrain, rendered.train)):
        meta = {"web_caption": web, "synthetic_caption": syn, "objects": [o.to_json() for o in scene.objects]}
        samples.append({"__key__": f"{i:08d}", "png": png, "txt": web.encode("utf-8"),
                        "json": json.dumps(meta, ensure_ascii=False).encode("utf-8")})
    shards = write_shards(staged / "pretrain", samples, p.shard_size)
    names = [f"{ITEM_KINDS[kind].prefix}_{i:06d}.png" for kind, items in drawn.llava.items() for i in range(len(items))]
    for name, (png, _) in zip(names, rendered.train[p.pretrain:]):
        write_bytes(staged / "llava" / "images" / name, png)
    write_json(staged / "llava" / "stage1.json", stage1)
    write_json(staged / "llava" / "stage2.json", stage2)
    existence = existence_subset(stage2)
    write_json(staged / "llava" / EXISTENCE_FILE, existence)
    for (task, i), (png, _) in rendered.eval.items():
        write_bytes(staged / "eval" / evalsets.image_path(task, i), png)
    for task, records in eval_records.items():
        if task == "retrieval":
            write_json(staged / "eval" / "retrieval" / "dataset.json", records)
        else:
            write_jsonl(staged / "eval" / f"{task}.jsonl", records)
    corpus = _corpus(drawn.pretrain, stage1, stage2)
    (staged / "corpus.txt").write_text("".join(line + "\n" for line in corpus), encoding="utf-8")

    counts = {"pretrain": p.pretrain, "pretrain_shards": len(shards), "llava_images": len(names),
              "stage1": len(stage1), "stage2": len(stage2),
              "stage2_text_only": sum("image" not in r for r in stage2), "stage2_existence": len(existence),
              "eval_images": len(rendered.eval)}
    counts.update({t: len(r["images"]) if t == "retrieval" else len(r) for t, r in eval_records.items()})
    counts["corpus_lines"] = len(corpus)
    (staged / "lookup.txt").write_text("".join(line + "\n" for line in lookup), encoding="utf-8")
    counts["lookup_lines"] = len(lookup)
    return counts


def _manifest(staged: Path, p: WorldPreset, seed: int, counts: dict, rendered: Rendered) -> dict:
    """Phase 7: the MANIFEST: preset, counts and the sha256 of every file written so far."""
    files = {f.relative_to(staged).as_posix(): sha256_file(f) for f in sorted(staged.rglob("*")) if f.is_file()}
    return {"preset": p.name, "seed": seed, "generator_version": GENERATOR_VERSION, "image_size": p.image_size,
            "counts": counts, "files": dict(sorted(files.items())),
            "preset_config": {k: getattr(p, k) for k in p.__dataclass_fields__},
            "heldout": {"training_images": len({h for _, h in rendered.train}), "eval_images": len(rendered.eval),
                        "resampled_collisions": rendered.resampled}}


def _lookup(p: WorldPreset, seed: int) -> list[str]:
    """The LM's look-up text (`questions.lookup_line`), a curriculum step read before `corpus.txt`
    (`clips-llava lm pretrain --data WORLD/lookup.txt`). Each line lists a freshly drawn scene, so the
    LM reads as many different lists as it has lines (never an image's scene: these are text only)."""
    out = []
    for i in range(LOOKUP_LINES_PER_PRETRAIN * p.pretrain):
        rng = rng_for(seed, "lookup", i)
        out.append(questions.lookup_line(sample_scene(rng, p.min_objects, p.max_objects), rng))
    return out


def existence_subset(stage2: list[dict]) -> list[dict]:
    """The existence conversations of stage2.json, the same records in the same order: the data of an
    existence-first phase of stage 2 (`clips-llava demo` trains on them alone before the full mix)."""
    return [r for r in stage2 if conversations.record_kind(r) == "existence"]


def _corpus(pretrain, stage1, stage2) -> list[str]:
    """The world's language from training data only: captions, questions and answers, one per line."""
    lines = []
    for _, web, syn in pretrain:
        lines += [web, syn]
    for record in stage1 + stage2:
        for t in record["conversations"]:
            lines += [part for part in t["value"].replace("<image>", "").split("\n") if part.strip()]
    return lines
