"""Questions about scenes, shared by the stage-2 conversations and the eval splits.

Short-answer questions (count, colour, shape, position, existence: GQA/VQAv2 style), yes/no
pairs (MME style) and object-existence probes with POPE's three kinds of negatives. Every
answer is computed from the scene itself, so it is right by construction.

    q, a, kind = short_question(scene, rng)          # e.g. ("What color is the star?", "red", "color")
    q, a = existence_question(scene, rng)            # e.g. ("Is there a red star in the image?", "No")

Yes/no answers have one form everywhere, "Yes"/"No" (lmms-eval's POPE, MME and GQA scorers ignore
case). Two forms of one answer split its probability between them: the demo's byte-level BPE
tokenises " yes" as one token and " Yes" as "Ġ" + "Yes", so the two never share a first token.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clips_tower.io import unknown_message
from clips_tower.world.captions import NUMBER_WORDS, POSITION_PHRASES, pick, plural
from clips_tower.world.scene import COLOR_WEIGHTS, COLORS, POSITIONS, SHAPES, Scene

ALL_NAMES = tuple(f"{c} {s}" for c in COLORS for s in SHAPES)
ALL_POSITIONS = tuple(p for row in POSITIONS for p in row)
SHORT_KINDS = ("count", "color", "shape", "position", "object", "existence")
MME_KINDS = ("existence", "count", "position", "color")
# MME's own yes/no suffix. lmms-eval's MME task swaps it for LLaVA-1.5's short-answer prompt
# (`conversations.SHORT`), so training needs yes/no questions in both forms.
MME_SUFFIX = " Please answer yes or no."
# Object names by the frequency the scene sampler draws them with (colour weight x shape weight): the
# ranking POPE's "popular" negatives follow, known before any data is drawn. The eval split ranks the
# training scenes' own counts instead, which this approximates. Measured (README, twelfth round): as
# training negatives they let the object's name alone say "No"; random ones alone let it say "Yes".
PRIOR_POPULARITY = tuple(sorted(ALL_NAMES, key=lambda n: (-COLOR_WEIGHTS[n.split()[0]] * SHAPES[n.split()[1]], n)))


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
        return f"Is there a {pick(rng, absent_names(scene))} in the image?", "No"
    raise ValueError(unknown_message("question kind", kind, SHORT_KINDS))


def _there_are(n: int) -> str:
    return "Is there one shape" if n == 1 else f"Are there {NUMBER_WORDS[n]} shapes"


def _attribute_pair(rng, cands: list, attr: str, values, question) -> list[tuple[str, str]] | None:
    """A yes/no pair about one object: its true `attr` ("Yes"), then another value ("No"); None
    when no object qualifies. Draws the object, then the wrong value."""
    if not cands:
        return None
    obj = pick(rng, cands)
    true = getattr(obj, attr)
    other = pick(rng, [v for v in values if v != true])
    return [(question(obj, true), "Yes"), (question(obj, other), "No")]


def yes_no_pair(scene: Scene, rng: np.random.Generator, kind: str, suffix: str = MME_SUFFIX):
    """MME-style pair [(question + suffix, "Yes"), (question + suffix, "No")] of one kind, or None if not
    applicable."""
    objs = scene.objects
    if kind == "existence":
        yes, no = pick(rng, sorted(scene.names)), pick(rng, absent_names(scene))
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
                               lambda obj, c: f"Is the {obj.shape} {c}?{suffix}")
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


def existence_question(scene: Scene, rng: np.random.Generator, present: bool | None = None) -> tuple[str, str]:
    """POPE's question about one object, ("Is there a <colour> <shape> in the image?", "Yes"/"No").

    `present` None: present and absent with equal chance. An absent object is drawn as POPE draws its
    negatives, one of its three kinds with equal chance: random, popular (among the three most frequent
    absent objects, by `PRIOR_POPULARITY`) or adversarial (a present shape in another colour; random
    where every colour of the present shapes is present).
    """
    if present is None:
        present = bool(rng.random() < 0.5)
    if present:
        return f"Is there a {pick(rng, sorted(scene.names))} in the image?", "Yes"
    category = ("random", "popular", "adversarial")[int(rng.integers(3))]
    if category == "adversarial" and len({o.shape for o in scene.objects}) * len(COLORS) == len(scene.names):
        category = "random"
    return f"Is there a {pope_negative(scene, rng, category, PRIOR_POPULARITY)} in the image?", "No"


def lookup_line(scene: Scene, rng: np.random.Generator, questions: int = 4) -> str:
    """One line of the LM's look-up text: the scene's objects as a list, then POPE-style questions with
    their answers, "The shapes are red star, blue circle. Is there a blue star in the image? No. ...".

    An LM must learn to look a name up in its context from text before it can look it up in image
    tokens: measured on the demo world, the demo-sized LM learns it from these lines alone, and not
    when they are mixed into the world corpus from the start (README, tenth round).
    """
    qas = [existence_question(scene, rng) for _ in range(questions)]
    return "The shapes are " + ", ".join(o.name for o in scene.objects) + ". " + " ".join(
        f"{q} {a}." for q, a in qas)
