"""The world's language: web captions (noisy alt-text), synthetic captions (accurate recaptions),
short captions (stage-1 / BLIP-like) and extra reference captions (captioning eval).

The contrast between the two caption kinds is what CLIPS learns from: a web caption is short,
often partial, sometimes uninformative ("my drawing 12") and sometimes wrong about a colour; the
synthetic caption has one sentence per object plus a count/layout sentence (about 40-100 words).

    web_caption(scene, rng); synthetic_caption(scene, rng); short_caption(scene)
"""
from __future__ import annotations

import numpy as np

from clips_tower.world.scene import COLORS, Scene, SceneObject

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ROW_NAMES = ("top", "middle", "bottom")
POSITION_PHRASES = {
    "top left": "in the top left corner", "top": "at the top", "top right": "in the top right corner",
    "left": "on the left", "center": "in the center", "right": "on the right",
    "bottom left": "in the bottom left corner", "bottom": "at the bottom",
    "bottom right": "in the bottom right corner",
}
GRADIENT_PHRASES = {
    "none": "an even tone", "horizontal": "a soft gradient from left to right",
    "vertical": "a soft gradient from top to bottom", "diagonal": "a soft diagonal gradient",
}
UNINFORMATIVE = ("my drawing {n}", "IMG_{n4}", "untitled {n}", "doodle {n}", "screenshot {n}",
                 "new wallpaper", "art class", "homework", "pattern test", "export_{n4}")


def pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def plural(shape: str, n: int) -> str:
    if n == 1:
        return shape
    return shape + ("es" if shape.endswith(("s", "x")) else "s")


def count_phrase(n: int, noun: str = "shape") -> str:
    return f"{NUMBER_WORDS[n]} {plural(noun, n)}"


def join_and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def on_background(scene: Scene) -> str:
    return f"{article(scene.background)} {scene.background} background"


def object_phrase(obj: SceneObject, with_size: bool = True) -> str:
    words = f"{obj.size} {obj.color} {obj.shape}" if with_size else obj.name
    return f"{article(words)} {words}"


# --------------------------------------------------------------------------- web captions
def web_caption(scene: Scene, rng: np.random.Generator, index: int) -> str:
    """Alt-text-like: 55% partial but right, 25% partial with a wrong colour, 20% uninformative."""
    u = rng.random()
    if u < 0.20:
        return pick(rng, UNINFORMATIVE).format(n=index % 97 + 1, n4=f"{int(rng.integers(10000)):04d}")
    objs = [scene.objects[int(i)] for i in rng.permutation(len(scene.objects))[: int(rng.integers(1, 3))]]
    names = [o.name for o in objs]
    if u < 0.45:  # wrong about a colour: the kind of error real alt-text makes
        wrong = [c for c in COLORS if c != objs[0].color]
        names[0] = f"{pick(rng, wrong)} {objs[0].shape}"
    style = int(rng.integers(6))
    if style == 0:
        text = " and ".join(names)
    elif style == 1:
        text = f"{names[0]} on {scene.background}"
    elif style == 2:
        text = f"{count_phrase(len(scene.objects))}, {names[0]}"
    elif style == 3:
        text = f"simple {plural(objs[0].shape, 2)} drawing"
    elif style == 4:
        text = f"{article(names[0])} {names[0]} i made"
    else:
        text = " ".join(names) + " clipart"
    return text.capitalize() if rng.random() < 0.3 else text


# --------------------------------------------------------------------------- synthetic captions
def _intro(scene: Scene, rng: np.random.Generator) -> str:
    n, bg = len(scene.objects), scene.background
    what = "a single shape" if n == 1 else count_phrase(n)
    return pick(rng, (
        f"The image shows {what} drawn on {article(bg)} {bg} background.",
        f"This picture contains {what} on a plain {bg} background.",
        f"In this image, {what} {'is' if n == 1 else 'are'} placed on {article(bg)} {bg} background.",
    ))


def _object_sentence(obj: SceneObject, rng: np.random.Generator) -> str:
    where = POSITION_PHRASES[obj.position]
    a = object_phrase(obj)
    return pick(rng, (
        f"{a.capitalize()} sits {where}.",
        f"{where.capitalize()} there is {a}.",
        f"{a.capitalize()} is drawn {where}.",
        f"{where.capitalize()} we see {a}.",
    ))


def _layout_sentence(scene: Scene) -> str:
    n = len(scene.objects)
    per_row = [sum(o.row == r for o in scene.objects) for r in range(3)]
    parts = [f"{NUMBER_WORDS[k]} in the {ROW_NAMES[r]} row" for r, k in enumerate(per_row) if k]
    empty = [ROW_NAMES[r] for r, k in enumerate(per_row) if not k]
    verb = "is" if n == 1 else "are"
    text = f"In total there {verb} {count_phrase(n)}: {join_and(parts)}"
    if empty:
        text += f", while the {join_and(empty)} {'row is' if len(empty) == 1 else 'rows are'} empty"
    return text + "."


def _colour_sentence(scene: Scene) -> str:
    colours = sorted({o.color for o in scene.objects})
    if len(colours) == 1:
        return f"Every shape in the image is {colours[0]}."
    return f"The colors used are {join_and(colours)}."


def _background_sentence(scene: Scene, rng: np.random.Generator) -> str:
    grain = "a little" if scene.noise < 5 else "some visible"
    return pick(rng, (
        f"The {scene.background} background has {GRADIENT_PHRASES[scene.gradient]} and {grain} grain.",
        f"Behind the shapes, the background shows {GRADIENT_PHRASES[scene.gradient]} with {grain} noise.",
    ))


def synthetic_caption(scene: Scene, rng: np.random.Generator) -> str:
    """Accurate multi-sentence recaption: intro, one sentence per object, colours, layout, background."""
    sentences = [_intro(scene, rng)]
    sentences += [_object_sentence(o, rng) for o in scene.objects]
    if len(scene.objects) <= 3:  # short scenes get extra sentences to stay >= ~40 words
        sentences.append(_colour_sentence(scene))
    sentences.append(_layout_sentence(scene))
    if len(scene.objects) <= 2:
        sentences.append(_background_sentence(scene, rng))
    return " ".join(sentences)


# --------------------------------------------------------------------------- short / reference captions
def short_caption(scene: Scene) -> str:
    """Concise accurate caption (LLaVA stage-1 target): the objects, then the background."""
    return f"{join_and([object_phrase(o) for o in scene.objects])} on {on_background(scene)}."


def reference_captions(scene: Scene, rng: np.random.Generator) -> list[str]:
    """Five accurate references in different short styles, as COCO has five per image.

    All five are COCO-like (one sentence, objects named with colour and shape); none is in the
    multi-sentence synthetic style the towers train on, so retrieval with them measures transfer to
    human-style queries, not recall of the training caption style. `rng` picks the count wording.
    """
    n = len(scene.objects)
    by_pos = join_and([f"{object_phrase(o, with_size=False)} {POSITION_PHRASES[o.position]}" for o in scene.objects])
    names = join_and([object_phrase(o, with_size=False) for o in scene.objects])
    what = "one shape" if n == 1 else count_phrase(n)
    return [
        short_caption(scene).capitalize(),
        f"{count_phrase(n).capitalize()} on {on_background(scene)}: {names}.",
        f"A picture with {by_pos}.",
        f"{names.capitalize()} drawn on {on_background(scene)}.",
        pick(rng, (f"A simple drawing of {what}: {names}.", f"An image showing {names}.")),
    ]
