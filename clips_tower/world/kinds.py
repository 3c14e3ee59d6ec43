"""The item kinds of the synthetic world in one table: how each is sampled, rendered and talked about.

    ITEM_KINDS["sign"].sample(rng, preset) -> Sign;  ITEM_KINDS["sign"].render(sign, 64) -> PIL image
    ITEM_KINDS["chart"].converse["chart"](chart, rng) -> [(question, answer), ...]
    CONVERSATIONS["text_only"] -> ("scene", text_only_turns, False)

A kind's LLaVA training images are drawn from its own random stream, written as
`llava/images/<prefix>_NNNNNN.png`, and counted by one preset field. Its stage-2 conversation
kinds (the keys of `converse`, shares in `conversations.STAGE2_MIX`) talk about one of those
images; the `imagined` ones draw a fresh item and describe it in words only (no image). Scenes
are also the captioned kind: the pretraining pairs and stage 1 are scenes. Eval tasks name their
kind in `evalsets.EVAL_TASKS`. Adding a kind is one entry here, plus its preset count and its
conversation shares.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from clips_tower.world import conversations as conv
from clips_tower.world.presets import WorldPreset
from clips_tower.world.scene import render_scene, sample_scene
from clips_tower.world.signs import render_chart, render_sign, sample_chart, sample_sign

Turns = Callable[[Any, np.random.Generator], list[tuple[str, str]]]  # (item, rng) -> [(question, answer), ...]


@dataclass(frozen=True)
class ItemKind:
    sample: Callable[[np.random.Generator, WorldPreset], Any]
    render: Callable[[Any, int], Image.Image]  # (item, size) -> RGB image
    stream: str  # random stream of its LLaVA training images (generate.STREAMS)
    prefix: str  # their file names: llava/images/<prefix>_NNNNNN.png
    count: str  # the preset field saying how many there are
    converse: dict[str, Turns]  # stage-2 conversation kind -> turns about one image of this kind
    imagined: dict[str, Turns] = field(default_factory=dict)  # stage-2 kinds about a fresh item, no image


ITEM_KINDS: dict[str, ItemKind] = {  # order = order of the LLaVA images (and of their render jobs)
    "scene": ItemKind(
        sample=lambda rng, p: sample_scene(rng, p.min_objects, p.max_objects), render=render_scene,
        stream="llava", prefix="scene", count="llava_images",
        converse={"existence": conv.existence_turns, "short_qa": conv.short_qa_turns, "caption": conv.caption_turns,
                  "detail": conv.detail_turns, "yes_no": conv.yes_no_turns, "chat": conv.chat_turns},
        imagined={"text_only": conv.text_only_turns}),
    "sign": ItemKind(sample=lambda rng, p: sample_sign(rng), render=render_sign,
                     stream="text", prefix="text", count="text_images", converse={"text": conv.sign_turns}),
    "chart": ItemKind(sample=lambda rng, p: sample_chart(rng), render=render_chart,
                      stream="chart", prefix="chart", count="chart_images", converse={"chart": conv.chart_turns}),
}

# stage-2 conversation kind -> (item kind, turns, shows an image)
CONVERSATIONS: dict[str, tuple[str, Turns, bool]] = {
    **{c: (name, turns, True) for name, k in ITEM_KINDS.items() for c, turns in k.converse.items()},
    **{c: (name, turns, False) for name, k in ITEM_KINDS.items() for c, turns in k.imagined.items()},
}
