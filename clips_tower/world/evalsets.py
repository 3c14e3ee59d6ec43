"""Held-out eval splits of the synthetic world, one builder per task (records only, no I/O).

Each builder takes the task's final items (scenes, signs or charts already checked for
content-hash disjointness from training) and returns JSON-ready records whose "image" paths
are relative to `eval/`. The tasks mirror the CLIPS paper's LLaVA table: POPE, GQA, MME,
captioning (NoCaps-like), TextVQA, ChartQA, plus Karpathy-format retrieval for the towers.

    EVAL_TASKS["pope"]  ->  builder(items, rng_for, popularity) -> list[dict]
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

from clips_tower.world.captions import reference_captions
from clips_tower.world.questions import MME_KINDS, SHORT_KINDS, pope_negative, short_question, yes_no_pair

POPE_CATEGORIES = ("random", "popular", "adversarial")
RngFor = Callable[[int], np.random.Generator]  # item index -> its own question generator


def image_path(task: str, i: int) -> str:
    return f"images/{task}_{i:06d}.png"


def pope(items, rng_for: RngFor, popularity: list[str]) -> list[dict]:
    out = []
    for i, scene in enumerate(items):
        rng = rng_for(i)
        present = [sorted(scene.names)[int(j)] for j in rng.permutation(len(scene.names))]
        for c, category in enumerate(POPE_CATEGORIES):
            yes = present[c % len(present)]  # different positives per category where the scene allows
            no = pope_negative(scene, rng, category, popularity)
            for name, answer in ((yes, "yes"), (no, "no")):
                out.append({"question_id": f"pope-{len(out):06d}", "image": image_path("pope", i),
                            "question": f"Is there a {name} in the image?", "answer": answer,
                            "category": category, "object": name})
    return out


def gqa(items, rng_for: RngFor, popularity=None) -> list[dict]:
    out = []
    for i, scene in enumerate(items):
        rng = rng_for(i)
        kinds = [SHORT_KINDS[int(k)] for k in rng.permutation(len(SHORT_KINDS))]
        asked = 0
        for kind in kinds:  # two different kinds per image, skipping inapplicable ones
            try:
                q, a, _ = short_question(scene, rng, kind)
            except ValueError:
                continue
            out.append({"question_id": f"gqa-{len(out):06d}", "image": image_path("gqa", i),
                        "question": q, "answer": a})
            asked += 1
            if asked == 2:
                break
    return out


def mme(items, rng_for: RngFor, popularity=None) -> list[dict]:
    out = []
    for i, scene in enumerate(items):
        rng = rng_for(i)
        for k in [MME_KINDS[int(j)] for j in rng.permutation(len(MME_KINDS))]:
            pair = yes_no_pair(scene, rng, k)
            if pair:
                break
        for q, a in pair:  # "existence" always applies, so pair is never None here
            out.append({"question_id": f"mme-{len(out):06d}", "image": image_path("mme", i),
                        "question": q, "answer": a, "category": k})
    return out


def caption(items, rng_for: RngFor, popularity=None) -> list[dict]:
    return [{"question_id": f"caption-{i:06d}", "image": image_path("caption", i),
             "references": reference_captions(scene, rng_for(i))} for i, scene in enumerate(items)]


def textvqa(items, rng_for: RngFor, popularity=None) -> list[dict]:
    out = []
    for i, sign in enumerate(items):
        what = "word" if sign.kind == "word" else "number"
        # TextVQA carries ten human answers per question; here every annotator agrees.
        out.append({"question_id": f"textvqa-{i:06d}", "image": image_path("textvqa", i),
                    "question": f"What {what} is written in the image?", "answers": [sign.text] * 10})
    return out


def chartqa(items, rng_for: RngFor, popularity=None) -> list[dict]:
    out = []
    for i, chart in enumerate(items):
        rng = rng_for(i)
        label = chart.labels[int(rng.integers(len(chart.labels)))]
        extreme = ("Which bar has the highest value?", chart.highest) if rng.random() < 0.5 \
            else ("Which bar has the lowest value?", chart.lowest)
        for q, a in (extreme, (f"What is the value of bar {label}?", str(chart.values[chart.labels.index(label)]))):
            out.append({"question_id": f"chartqa-{len(out):06d}", "image": image_path("chartqa", i),
                        "question": q, "answer": a})
    return out


def tokens(sentence: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", sentence.lower())


def retrieval(items, rng_for: RngFor, popularity=None) -> dict:
    """Karpathy COCO/Flickr JSON; filepath/filename resolve under eval/ ("images/retrieval_...png")."""
    images, sentid = [], 0
    for i, scene in enumerate(items):
        sentences = []
        for raw in reference_captions(scene, rng_for(i)):
            sentences.append({"raw": raw, "tokens": tokens(raw), "imgid": i, "sentid": sentid})
            sentid += 1
        images.append({"imgid": i, "filename": image_path("retrieval", i).split("/", 1)[1], "filepath": "images",
                       "split": "test", "sentences": sentences, "sentids": [s["sentid"] for s in sentences]})
    return {"dataset": "synthworld", "images": images}


# task -> (item kind, builder). Item kinds: "scene" | "sign" | "chart".
EVAL_TASKS: dict[str, tuple[str, Callable]] = {
    "pope": ("scene", pope), "gqa": ("scene", gqa), "mme": ("scene", mme), "caption": ("scene", caption),
    "textvqa": ("sign", textvqa), "chartqa": ("chart", chartqa), "retrieval": ("scene", retrieval),
}
