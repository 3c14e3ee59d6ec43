"""Questions about scenes, shared by the stage-2 conversations and the eval splits.

Short-answer questions (count, colour, shape, position, existence: GQA/VQAv2 style), yes/no
pairs (MME style) and object-existence probes with POPE's three kinds of negatives. Every
answer is computed from the scene itself, so it is right by construction.

    q, a, kind = short_question(scene, rng)          # e.g. ("What color is the star?", "red", "color")
    q, a = existence_question(scene, rng)            # e.g. ("Is there a red star in the image?", "No")

Yes/no answers have one form everywhere, "Yes"/"No" (lmms-eval's POPE, MME and GQA scorers ignore
case). Two forms of one answer split its probability between them: the demo's byte-level BPE
tokenises " yes" as one token and " Yes" as "Ġ" + "Yes", so the two never share a first token.

Training questions are drawn so that the words of a yes/no question do not give its answer: each
object name is answered "Yes" and "No" about equally often (`matched_negative`), and so is each colour
in the colour pairs. A model then has to look at the image to beat chance, and a blind control scores
chance. The eval split's POPE keeps POPE's own negatives (`pope_negative`).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clips_tower.io import unknown_message
from clips_tower.world.captions import NUMBER_WORDS, POSITION_PHRASES, pick, plural
from clips_tower.world.scene import (
    COLOR_WEIGHTS,
    COLORS,
    POSITIONS,
    SHAPES,
    Scene,
    weighted_choice,
)

ALL_NAMES = tuple(f"{c} {s}" for c in COLORS for s in SHAPES)
ALL_POSITIONS = tuple(p for row in POSITIONS for p in row)
SHORT_KINDS = ("count", "color", "shape", "position", "object", "existence")
MME_KINDS = ("existence", "count", "position", "color")
# MME's own yes/no suffix. lmms-eval's MME task swaps it for LLaVA-1.5's short-answer prompt
# (`conversations.SHORT`), so training needs yes/no questions in both forms.
MME_SUFFIX = " Please answer yes or no."
# Object names by the frequency the scene sampler draws them with (colour weight x shape weight): the
# ranking POPE's "popular" negatives follow in the eval split, which ranks the training scenes' own counts.
PRIOR_POPULARITY = tuple(sorted(ALL_NAMES, key=lambda n: (-COLOR_WEIGHTS[n.split()[0]] * SHAPES[n.split()[1]], n)))


def _presence(name: str, objects: range = range(1, 7)) -> float:
    """P(an object called `name` is in a scene) under `scene.sample_scene`: each of k objects (k uniform
    over `objects`, the presets' 1-6) is that name with probability colour weight x shape weight."""
    color, shape = name.split()
    w = COLOR_WEIGHTS[color] / sum(COLOR_WEIGHTS.values()) * SHAPES[shape] / sum(SHAPES.values())
    return 1.0 - float(np.mean([(1.0 - w) ** k for k in objects]))


# The weight of each name as a training negative: its odds of being present. A name is asked about as a
# positive about as often as it is present, and as a negative about as often as it is absent times this
# weight, so every name is answered "Yes" and "No" about equally often and the name alone says nothing.
# Measured (README, twelfth and thirteenth rounds): with negatives ranked by frequency (POPE's popular kind) the
# name alone said "No" for the frequent objects; with uniform random ones it said "Yes" for them. The
# exponent 1.05 offsets the flattening that drawing a conversation's negatives distinct adds (on 30000
# scenes' existence conversations every name's share of "Yes" is then within 0.48-0.54).
NEGATIVE_WEIGHTS = {n: (p / (1.0 - p)) ** 1.05 for n, p in ((n, _presence(n)) for n in ALL_NAMES)}
# The same for the wrong colour of a colour pair, whose true colours follow COLOR_WEIGHTS: each colour's odds.
_COLOR_ODDS = {c: w / (sum(COLOR_WEIGHTS.values()) - w) for c, w in COLOR_WEIGHTS.items()}


def absent_names(scene: Scene) -> list[str]:
    present = scene.names
    return [n for n in ALL_NAMES if n not in present]


def unique_by(scene: Scene, attr: str) -> list:
    """Objects whose `attr` (shape/color/name) no other object in the scene shares."""
    values = [getattr(o, attr) for o in scene.objects]
    return [o for o in scene.objects if values.count(getattr(o, attr)) == 1]


def short_question(scene: Scene, rng: np.random.Generator, kind: str | None = None):
    """(question, short answer, kind); `kind` None picks an applicable kind at random. Answers are
    lowercase words or digits, except yes/no ("Yes"/"No")."""
    kinds = [kind] if kind else [SHORT_KINDS[int(i)] for i in rng.permutation(len(SHORT_KINDS))]
    for k in kinds:
        qa = _short(scene, rng, k)
        if qa is not None:
            return qa[0], qa[1], k
    raise ValueError(f"no applicable question of kind {kind!r} for this scene")


# kind -> (identifying attribute, question template, answered attribute)
_ATTRIBUTE_QUESTIONS = {
    "color": ("shape", "What color is the {}?", "color"),
    "shape": ("color", "What shape is the {} object?", "shape"),
    "position": ("name", "Where is the {}?", "position"),
}


def _short(scene: Scene, rng: np.random.Generator, kind: str):
    objs = scene.objects
    if kind == "count":
        style = int(rng.integers(3))
        if style == 0:
            return "How many shapes are in the image?", str(len(objs))
        if style == 1:
            color = pick(rng, [o.color for o in objs] + [pick(rng, list(COLORS))])
            return f"How many {color} shapes are there?", str(sum(o.color == color for o in objs))
        shape = pick(rng, [o.shape for o in objs])
        return f"How many {plural(shape, 2)} are there?", str(sum(o.shape == shape for o in objs))
    if kind in _ATTRIBUTE_QUESTIONS:
        # ask about an object singled out by an attribute no other object shares
        key_attr, template, answer_attr = _ATTRIBUTE_QUESTIONS[kind]
        cands = unique_by(scene, key_attr)
        if not cands:
            return None
        obj = pick(rng, cands)
        return template.format(getattr(obj, key_attr)), getattr(obj, answer_attr)
    if kind == "object":
        where = pick(rng, ALL_POSITIONS)
        found = [o for o in objs if o.position == where]
        return f"What is {POSITION_PHRASES[where]}?", found[0].name if found else "nothing"
    if kind == "existence":
        if rng.random() < 0.5:
            return f"Is there a {pick(rng, sorted(scene.names))} in the image?", "Yes"
        return f"Is there a {matched_negative(scene, rng)} in the image?", "No"
    raise ValueError(unknown_message("question kind", kind, SHORT_KINDS))


def _there_are(n: int) -> str:
    return "Is there one shape" if n == 1 else f"Are there {NUMBER_WORDS[n]} shapes"


def _attribute_pair(rng, cands: list, attr: str, values, question, weights: dict | None = None
                    ) -> list[tuple[str, str]] | None:
    """A yes/no pair about one object: its true `attr` ("Yes"), then another value ("No"); None
    when no object qualifies. Draws the object, then the wrong value: uniformly, or by `weights` where
    the true values follow them (colours), so that the value named alone does not give the answer."""
    if not cands:
        return None
    obj = pick(rng, cands)
    true = getattr(obj, attr)
    others = [v for v in values if v != true]
    other = pick(rng, others) if weights is None else weighted_choice(rng, {v: weights[v] for v in others})
    return [(question(obj, true), "Yes"), (question(obj, other), "No")]


def yes_no_pair(scene: Scene, rng: np.random.Generator, kind: str, suffix: str = MME_SUFFIX):
    """MME-style pair [(question + suffix, "Yes"), (question + suffix, "No")] of one kind, or None if not
    applicable."""
    objs = scene.objects
    if kind == "existence":
        yes, no = pick(rng, sorted(scene.names)), matched_negative(scene, rng)
        return [(f"Is there a {yes} in this image?{suffix}", "Yes"), (f"Is there a {no} in this image?{suffix}", "No")]
    if kind == "count":
        n = len(objs)
        wrong = pick(rng, [m for m in range(1, 7) if m != n])
        return [(f"{_there_are(n)} in this image?{suffix}", "Yes"),
                (f"{_there_are(wrong)} in this image?{suffix}", "No")]
    if kind == "position":
        return _attribute_pair(rng, unique_by(scene, "name"), "position", ALL_POSITIONS,
                               lambda obj, p: f"Is the {obj.name} {POSITION_PHRASES[p]}?{suffix}")
    if kind == "color":
        return _attribute_pair(rng, unique_by(scene, "shape"), "color", COLORS,
                               lambda obj, c: f"Is the {obj.shape} {c}?{suffix}", weights=_COLOR_ODDS)
    raise ValueError(unknown_message("yes/no kind", kind, MME_KINDS))


def pope_negative(scene: Scene, rng: np.random.Generator, category: str, popularity: Sequence[str]) -> str:
    """An object name absent from the scene, chosen the POPE way.

    random: any absent object; popular: one of the three most frequent absent objects of the
    training data (`popularity` = names by decreasing frequency); adversarial: an absent object
    sharing its shape with a present one (the same thing in another colour), which co-occurs.
    """
    absent = absent_names(scene)
    if category == "random":
        return pick(rng, absent)
    if category == "popular":
        ranked = [n for n in popularity if n not in scene.names]
        return pick(rng, ranked[:3]) if ranked else pick(rng, absent)
    if category == "adversarial":
        shapes = {o.shape for o in scene.objects}
        return pick(rng, [n for n in absent if n.split(" ", 1)[1] in shapes])
    raise ValueError(unknown_message("POPE category", category, ("random", "popular", "adversarial")))


def matched_negative(scene: Scene, rng: np.random.Generator) -> str:
    """An absent object name for a training question, drawn by `NEGATIVE_WEIGHTS`: over the training data
    each name is then as often absent as present in its answers. Most of them share a shape or a colour
    with a present object, since the frequent shapes and colours are both present and heavily weighted."""
    return weighted_choice(rng, {n: NEGATIVE_WEIGHTS[n] for n in absent_names(scene)})


def existence_question(scene: Scene, rng: np.random.Generator, present: bool | None = None) -> tuple[str, str]:
    """POPE's question about one object, ("Is there a <colour> <shape> in the image?", "Yes"/"No").

    `present` None: present and absent with equal chance. A present object is any of the scene's; an
    absent one is a `matched_negative`, so that the object's name carries no answer (the eval split's
    POPE negatives are POPE's own three kinds, `pope_negative`).
    """
    if present is None:
        present = bool(rng.random() < 0.5)
    if present:
        return f"Is there a {pick(rng, sorted(scene.names))} in the image?", "Yes"
    return f"Is there a {matched_negative(scene, rng)} in the image?", "No"


def lookup_line(scene: Scene, rng: np.random.Generator, questions: int = 4) -> str:
    """One line of the LM's look-up text: the scene's objects as a list, then POPE-style questions with
    their answers, "The shapes are red star, blue circle. Is there a blue star in the image? No. ...".

    An LM must learn to look a name up in its context from text before it can look it up in image
    tokens: measured on the demo world, the demo-sized LM learns it from these lines alone, and not
    when they are mixed into the world corpus from the start (README, tenth round).
    """
    qas = [existence_question(scene, rng) for _ in range(questions)]
    return scene_list(scene) + " " + " ".join(f"{q} {a}." for q, a in qas)


def scene_list(scene: Scene) -> str:
    """The scene as the look-up lines write it: "The shapes are red star, blue circle."."""
    return "The shapes are " + ", ".join(o.name for o in scene.objects) + "."
