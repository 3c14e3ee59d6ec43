"""LLaVA-1.5 conversation JSON for the synthetic world: stage 1 (caption pairs) and stage 2 (mix).

Stage 1 follows blip_laion_cc_sbu_558k: one human turn "<image>\\n<instruction>" and one gpt turn
with a concise caption. Stage 2 follows llava_v1_5_mix665k: multi-turn conversations whose first
human turn holds the only "<image>"; short-answer turns end with LLaVA-1.5's "Answer the
question using a single word or phrase."; text-only samples carry no "image" key.

    stage1_record(i, "scene_000000.png", scene, rng)
    stage2_record(i, "chart", "chart_000003.png", chart_turns(chart, rng))

This module holds the turns and the record shapes; which turns go with which stage-2 kind and which
image kind is the table `kinds.ITEM_KINDS`.
"""
from __future__ import annotations

import numpy as np

from clips_tower.world.captions import POSITION_PHRASES, join_and, object_phrase, pick, short_caption, synthetic_caption
from clips_tower.world.questions import MME_KINDS, MME_SUFFIX, existence_question, short_question, yes_no_pair
from clips_tower.world.scene import SHAPES, Scene, SceneObject
from clips_tower.world.signs import BarChart, Sign

SHORT = "\nAnswer the question using a single word or phrase."
STAGE1_PROMPTS = (
    "Give a brief description of the image.", "Describe the image concisely.",
    "Provide a short caption for this image.", "What is in the photo?",
    "Summarize the visual content of the image.", "Write a terse but informative summary of the picture.",
    "Share a concise interpretation of the image provided.", "Render a clear and concise summary of the photo.",
)
DETAIL_PROMPTS = (
    "Describe the image in detail.", "What do you see in this image? Describe it thoroughly.",
    "Write a detailed description of the given image.", "Explain the visual content of the image in great detail.",
)
# LLaVA-1.5's one-sentence caption instruction (its TextCaps prompt in llava_v1_5_mix665k; lmms-eval's COCO
# caption task asks the same).
CAPTION_PROMPT = "Provide a one-sentence caption for the provided image."
# kind -> share of stage-2 conversations (each kind's turns and image kind: kinds.ITEM_KINDS). Scene kinds use
# the stage-1 images. Measured on the demo world (README, twelfth round): with only 10% yes/no records among
# captions, chat and charts, the LLaVA answers every yes/no question one way; with most records asking
# POPE-style object questions (8 per image, as llava_v1_5_mix665k bundles its VQAv2/GQA questions per
# image) it answers POPE from the image. Captions keep a seventh of the mix for the caption benchmark.
STAGE2_MIX: dict[str, float] = {
    "existence": 0.52, "short_qa": 0.145, "caption": 0.13, "detail": 0.025, "yes_no": 0.065, "chat": 0.015,
    "text": 0.03, "chart": 0.03, "text_only": 0.04,
}
EXISTENCE_TURNS = 8
CORNERS = {"circle": "A circle has no corners.", "square": "A square has four corners.",
           "triangle": "A triangle has three corners.", "diamond": "A diamond has four corners.",
           "star": "A star has five points.", "cross": "A cross has four arms."}


def turn(who: str, value: str) -> dict:
    return {"from": who, "value": value}


def with_image(turns: list[tuple[str, str]]) -> list[dict]:
    """[(question, answer), ...] -> LLaVA turns, "<image>\\n" on the first question only."""
    out = []
    for i, (q, a) in enumerate(turns):
        out += [turn("human", ("<image>\n" + q) if i == 0 else q), turn("gpt", a)]
    return out


def stage1_record(index: int, image: str, scene: Scene, rng: np.random.Generator) -> dict:
    return {"id": f"{index:09d}", "image": image,
            "conversations": with_image([(pick(rng, STAGE1_PROMPTS), short_caption(scene).capitalize())])}


def stage2_kinds(n: int, rng: np.random.Generator) -> list[str]:
    """n conversation kinds in the STAGE2_MIX proportions (rounded), shuffled."""
    kinds = list(STAGE2_MIX)
    counts = [max(1, int(round(n * STAGE2_MIX[k]))) for k in kinds]
    counts[0] += n - sum(counts)  # the rounding remainder goes to the first kind
    out = [k for k, c in zip(kinds, counts) for _ in range(c)]
    return [out[int(i)] for i in rng.permutation(len(out))]


def short_qa_turns(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    n_turns, qas = int(rng.integers(2, 5)), {}
    for _ in range(3 * n_turns):  # distinct questions only
        q, a, _ = short_question(scene, rng)
        qas.setdefault(q, a)
        if len(qas) == n_turns:
            break
    return [(q + SHORT, a) for q, a in qas.items()]


def existence_turns(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Distinct POPE-style object questions with short answers, as many "Yes" as "No" (POPE's balance):
    every present object up to EXISTENCE_TURNS / 2 of them, as many absent ones, in random order."""
    n = min(len(scene.names), EXISTENCE_TURNS // 2)
    qas: dict[str, str] = {}
    for present in (True, False):
        want = len(qas) + n
        for _ in range(10 * n):
            q, a = existence_question(scene, rng, present)
            qas.setdefault(q, a)
            if len(qas) == want:
                break
    items = list(qas.items())
    return [(items[int(i)][0] + SHORT, items[int(i)][1]) for i in rng.permutation(len(items))]


def caption_turns(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    return [(CAPTION_PROMPT, short_caption(scene).capitalize())]


def detail_turns(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    return [(pick(rng, DETAIL_PROMPTS), synthetic_caption(scene, rng))]


def yes_no_turns(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Two MME-kind yes/no turns. Each ends, at random, with MME's own " Please answer yes or no." or with
    the short-answer prompt that lmms-eval's MME task puts in its place (as llava_v1_5_mix665k's VQAv2 and GQA
    yes/no questions do); trained on the first form only, the model answers lmms-eval's MME with a phrase."""
    out = []
    for k in [MME_KINDS[int(i)] for i in rng.permutation(len(MME_KINDS))][:2]:
        pair = yes_no_pair(scene, rng, k, suffix=MME_SUFFIX if rng.random() < 0.5 else SHORT)
        if pair:
            out.append(pair[int(rng.integers(2))])
    return out or yes_no_pair(scene, rng, "existence")


def chat_turns(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    objs = scene.objects
    listing = join_and([f"{object_phrase(o)} {POSITION_PHRASES[o.position]}" for o in objs])
    out = [("What shapes can you see in this picture?", f"I can see {listing}."),
           ("What color is the background?", f"The background is {scene.background}.")]
    biggest = [o for o in objs if o.size == "large"]
    if biggest:
        o = pick(rng, biggest)
        out.append(("Name one of the large shapes and tell me where it is.",
                    f"The {o.color} {o.shape} is large and sits {POSITION_PHRASES[o.position]}."))
    return out[: int(rng.integers(2, len(out) + 1))]


def sign_turns(sign: Sign, rng: np.random.Generator) -> list[tuple[str, str]]:
    what = "word" if sign.kind == "word" else "number"
    first = pick(rng, (f"What {what} is written in the image?", "What is written on the sign?",
                       f"Read the {what} on the sign."))
    out = [(first + SHORT, sign.text)]
    if rng.random() < 0.5:
        out.append(("What color is the sign?" + SHORT, sign.plate))
    return out


def chart_turns(chart: BarChart, rng: np.random.Generator) -> list[tuple[str, str]]:
    label = pick(rng, chart.labels)
    pool = [
        (f"What is the value of bar {label}?", str(chart.values[chart.labels.index(label)])),
        ("Which bar has the highest value?", chart.highest),
        ("Which bar has the lowest value?", chart.lowest),
        ("How many bars are in the chart?", str(len(chart.labels))),
    ]
    order = rng.permutation(len(pool))[: int(rng.integers(1, 4))]
    return [(pool[int(i)][0] + SHORT, pool[int(i)][1]) for i in order]


def text_only_turns(scene: Scene, rng: np.random.Generator) -> list[tuple[str, str]]:
    style = int(rng.integers(3))
    if style == 0:
        shape = pick(rng, list(SHAPES))
        return [(f"How many corners does a {shape} have?", CORNERS[shape])]
    if style == 1:
        o: SceneObject = scene.objects[0]
        return [(f"Write one sentence placing {object_phrase(o)} {POSITION_PHRASES[o.position]} of a picture.",
                 f"{object_phrase(o).capitalize()} sits {POSITION_PHRASES[o.position]} of the picture.")]
    return [(f"Imagine a picture of {short_caption(scene)} Describe it in detail.", synthetic_caption(scene, rng))]


def stage2_record(index: int, kind: str, image: str | None, turns: list[tuple[str, str]]) -> dict:
    """One mix665k-style record of conversation `kind`; `image` is its file name, None for a text-only one."""
    record_id = f"synth-{kind}-{index:06d}"  # `record_kind` reads the kind back
    if image is None:
        convs = []
        for q, a in turns:
            convs += [turn("human", q), turn("gpt", a)]
        return {"id": record_id, "conversations": convs}
    return {"id": record_id, "image": image, "conversations": with_image(turns)}


def record_kind(record: dict) -> str:
    """The conversation kind of a `stage2_record` ("existence", "short_qa", ...), from its id."""
    return record["id"].split("-")[1]
