"""Generate the whole synthetic world into a directory: `generate_world(out, preset, seed)`.

    from clips_tower.world import generate_world
    manifest = generate_world("runs/world", preset="demo", seed=0)

Layout (a contract other parts of the project read): MANIFEST.json, corpus.txt,
pretrain/shard-*.tar (webdataset), llava/{images,stage1.json,stage2.json},
eval/{images,pope,gqa,mme,caption,textvqa,chartqa}.jsonl, eval/retrieval/dataset.json.
Everything is written to a staging directory beside `out` and renamed into place at the end,
so a failed or refused run leaves nothing behind. Every random draw comes from its own
generator seeded by (seed, stream, index[, attempt]), so output does not depend on the
number of worker processes. Eval streams never coincide with training streams ("other
seeds"), and an eval image whose pixels equal any training image's is resampled.
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
from pathlib import Path

import numpy as np

from clips_tower.io import sha256_file, unknown_message
from clips_tower.world import conversations, evalsets
from clips_tower.world.captions import synthetic_caption, web_caption
from clips_tower.world.presets import WorldPreset, get_preset
from clips_tower.world.scene import Scene, render_scene, sample_scene
from clips_tower.world.signs import render_chart, render_sign, sample_chart, sample_sign
from clips_tower.world.writers import (WorldError, check_out_dir, commit_dir, content_hash, encode_png,
                                       remove_empty, staging_dir, write_bytes, write_json, write_jsonl,
                                       write_shards)

GENERATOR_VERSION = "1"
log = logging.getLogger(__name__)

# stream -> id mixed into every seed. Training and eval ids never overlap.
STREAMS = {"pretrain": 1, "llava": 2, "text": 3, "chart": 4, "stage1": 5, "stage2": 6, "stage2-mix": 7}
STREAMS.update({f"eval-{t}": 100 + i for i, t in enumerate(evalsets.EVAL_TASKS)})
STREAMS.update({f"eval-{t}-questions": 200 + i for i, t in enumerate(evalsets.EVAL_TASKS)})


def rng_for(seed: int, stream: str, index: int, attempt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, STREAMS[stream], index, attempt])


def sample_item(kind: str, rng: np.random.Generator, p: WorldPreset):
    if kind == "scene":
        return sample_scene(rng, p.min_objects, p.max_objects)
    if kind == "sign":
        return sample_sign(rng)
    if kind == "chart":
        return sample_chart(rng)
    raise ValueError(unknown_message("item kind", kind, ("scene", "sign", "chart")))


def render_png(job: tuple) -> tuple[bytes, str]:
    """Worker: (item, size) -> (PNG bytes, content hash). Top-level so a process pool can pickle it."""
    item, size = job
    if isinstance(item, Scene):
        image = render_scene(item, size)
    elif hasattr(item, "plate"):
        image = render_sign(item, size)
    else:
        image = render_chart(item, size)
    return encode_png(image), content_hash(image)


def render_all(items: list, size: int, pool: ProcessPoolExecutor | None, workers: int) -> list[tuple[bytes, str]]:
    jobs = [(item, size) for item in items]
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


def _generate(staged: Path, out: Path, p: WorldPreset, seed: int, workers: int | None) -> dict:
    size = p.image_size

    # ---- training items: pretrain samples, llava scene/text/chart images
    pretrain = []
    for i in range(p.pretrain):
        rng = rng_for(seed, "pretrain", i)
        scene = sample_scene(rng, p.min_objects, p.max_objects)
        pretrain.append((scene, web_caption(scene, rng, i), synthetic_caption(scene, rng)))
    llava = {kind: [sample_item(kind, rng_for(seed, stream, i), p) for i in range(n)]
             for kind, stream, n in (("scene", "llava", p.llava_images), ("sign", "text", p.text_images),
                                     ("chart", "chart", p.chart_images))}
    train_items = [s for s, _, _ in pretrain] + llava["scene"] + llava["sign"] + llava["chart"]
    # ---- held-out items: other seeds ("eval-*" streams)
    eval_items: dict[str, list] = {}
    for task, (kind, _) in evalsets.EVAL_TASKS.items():
        n = getattr(p, f"{task}_images")
        eval_items[task] = [sample_item(kind, rng_for(seed, f"eval-{task}", i), p) for i in range(n)]
    order = [(task, i) for task in eval_items for i in range(len(eval_items[task]))]

    if workers is None:
        workers = 1 if len(train_items) < 1000 else min(2, os.cpu_count() or 1)
    # spawn, not fork: callers (tests, trainers) may already run threaded torch.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) if workers > 1 else None
    try:
        pngs = render_all(train_items + [eval_items[t][i] for t, i in order], size, pool, workers)
    finally:
        if pool is not None:
            pool.shutdown()
    train_png, eval_png = pngs[:len(train_items)], dict(zip(order, pngs[len(train_items):]))
    train_hashes = {h for _, h in train_png}

    # resample any eval image whose pixels match a training image or another eval image
    seen, resampled = set(train_hashes), 0
    for task, i in order:
        attempt = 0
        while eval_png[(task, i)][1] in seen:
            attempt += 1
            resampled += 1
            if attempt > 100:
                raise WorldError(f"cannot draw a held-out {task} image distinct from training; enlarge image_size")
            item = sample_item(evalsets.EVAL_TASKS[task][0], rng_for(seed, f"eval-{task}", i, attempt), p)
            eval_items[task][i] = item
            eval_png[(task, i)] = render_png((item, size))
        seen.add(eval_png[(task, i)][1])

    # ---- records
    popularity = collections.Counter(o.name for s in train_items if isinstance(s, Scene) for o in s.objects)
    ranked = [name for name, _ in sorted(popularity.items(), key=lambda kv: (-kv[1], kv[0]))]
    stage1 = [conversations.stage1_record(i, f"scene_{i:06d}.png", scene, rng_for(seed, "stage1", i))
              for i, scene in enumerate(llava["scene"])]
    stage2 = _stage2(seed, p, llava)
    eval_records = {task: builder(eval_items[task], lambda i, t=task: rng_for(seed, f"eval-{t}-questions", i), ranked)
                    for task, (_, builder) in evalsets.EVAL_TASKS.items()}

    # ---- write everything to the staging dir, then rename it into place
    samples = []
    for i, ((scene, web, syn), (png, _)) in enumerate(zip(pretrain, train_png)):
        meta = {"web_caption": web, "synthetic_caption": syn, "objects": [o.to_json() for o in scene.objects]}
        samples.append({"__key__": f"{i:08d}", "png": png, "txt": web.encode("utf-8"),
                        "json": json.dumps(meta, ensure_ascii=False).encode("utf-8")})
    shards = write_shards(staged / "pretrain", samples, p.shard_size)
    names = ([f"scene_{i:06d}.png" for i in range(p.llava_images)] + [f"text_{i:06d}.png" for i in range(p.text_images)]
             + [f"chart_{i:06d}.png" for i in range(p.chart_images)])
    for name, (png, _) in zip(names, train_png[p.pretrain:]):
        write_bytes(staged / "llava" / "images" / name, png)
    write_json(staged / "llava" / "stage1.json", stage1)
    write_json(staged / "llava" / "stage2.json", stage2)
    for (task, i), (png, _) in eval_png.items():
        write_bytes(staged / "eval" / evalsets.image_path(task, i), png)
    for task, records in eval_records.items():
        if task == "retrieval":
            write_json(staged / "eval" / "retrieval" / "dataset.json", records)
        else:
            write_jsonl(staged / "eval" / f"{task}.jsonl", records)
    corpus = _corpus(pretrain, stage1, stage2)
    (staged / "corpus.txt").write_text("".join(line + "\n" for line in corpus), encoding="utf-8")

    counts = {"pretrain": p.pretrain, "pretrain_shards": len(shards), "llava_images": len(names),
              "stage1": len(stage1), "stage2": len(stage2),
              "stage2_text_only": sum("image" not in r for r in stage2),
              "eval_images": len(eval_png)}
    counts.update({t: len(r["images"]) if t == "retrieval" else len(r) for t, r in eval_records.items()})
    counts["corpus_lines"] = len(corpus)
    files = {f.relative_to(staged).as_posix(): sha256_file(f) for f in sorted(staged.rglob("*")) if f.is_file()}
    manifest = {"preset": p.name, "seed": seed, "generator_version": GENERATOR_VERSION, "image_size": size,
                "counts": counts, "files": dict(sorted(files.items())),
                "preset_config": {k: getattr(p, k) for k in p.__dataclass_fields__},
                "heldout": {"training_images": len(train_hashes), "eval_images": len(eval_png),
                            "resampled_collisions": resampled}}
    write_json(staged / "MANIFEST.json", manifest)
    commit_dir(staged, out)
    return manifest


def _stage2(seed: int, p: WorldPreset, llava: dict) -> list[dict]:
    kinds = conversations.stage2_kinds(p.stage2, rng_for(seed, "stage2-mix", 0))
    used = collections.Counter()
    records = []
    for i, kind in enumerate(kinds):
        rng = rng_for(seed, "stage2", i)
        if kind == "text_only":  # an imagined scene, described in words only
            item, image = sample_scene(rng, p.min_objects, p.max_objects), None
        else:
            pool, prefix = {"text": (llava["sign"], "text"), "chart": (llava["chart"], "chart")}.get(
                kind, (llava["scene"], "scene"))
            k = used[prefix] % len(pool)  # cycle through the images so each one is used
            used[prefix] += 1
            item, image = pool[k], f"{prefix}_{k:06d}.png"
        records.append(conversations.stage2_record(i, kind, image, item, rng))
    return records


def _corpus(pretrain, stage1, stage2) -> list[str]:
    """The world's language from training data only: captions, questions and answers, one per line."""
    lines = []
    for _, web, syn in pretrain:
        lines += [web, syn]
    for record in stage1 + stage2:
        for t in record["conversations"]:
            lines += [part for part in t["value"].replace("<image>", "").split("\n") if part.strip()]
    return lines
