"""Sizes of the embedded synthetic world: one registry of frozen dataclasses, exact-key lookup.

    from clips_tower.world.presets import get_preset
    preset = get_preset("tiny")                      # the test world: 32 px, a few seconds
    preset = get_preset("demo", image_size=48)       # any field can be overridden (validated)

A preset fixes every size of the world (image size, objects per scene, samples per split).
The generated content is a function of (preset, seed) only.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from clips_tower.io import check_known


@dataclass(frozen=True)
class WorldPreset:
    name: str
    image_size: int  # square images, pixels
    min_objects: int  # objects per scene, each on its own cell of the 3x3 grid
    max_objects: int
    pretrain: int  # CLIPS pretraining samples (webdataset)
    shard_size: int  # samples per pretraining shard
    llava_images: int  # scene images for LLaVA stage 1 (and reused by stage 2)
    text_images: int  # stage-2 images with rendered words/digits
    chart_images: int  # stage-2 images with rendered bar charts
    stage2: int  # stage-2 conversations (scene, text, chart and text-only)
    pope_images: int  # 6 questions per image: (yes, no) x (random, popular, adversarial)
    gqa_images: int  # 2 short-answer questions per image
    mme_images: int  # 2 questions per image: one Yes, one No
    caption_images: int
    textvqa_images: int
    chartqa_images: int  # 2 questions per image: a label question and a value question
    retrieval_images: int

    def validate(self) -> None:
        """Raise ValueError (one line) on a size that cannot make a world."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "name":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"preset field {f.name} must be a positive integer, got {value!r}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16 pixels, got {self.image_size}")
        if self.max_objects > 6 or self.min_objects > self.max_objects:
            raise ValueError(
                f"objects per scene must satisfy 1 <= min_objects <= max_objects <= 6, "
                f"got {self.min_objects}..{self.max_objects}"
            )


PRESETS: dict[str, WorldPreset] = {
    # Tests: a few seconds on one core; every split present, 3 pretraining shards.
    "tiny": WorldPreset(
        name="tiny", image_size=32, min_objects=1, max_objects=6,
        pretrain=96, shard_size=32, llava_images=32, text_images=6, chart_images=6, stage2=200,
        pope_images=2, gqa_images=6, mme_images=6, caption_images=12, textvqa_images=12,
        chartqa_images=6, retrieval_images=12,
    ),
    # The end-to-end demo on 2 cores; generated in well under a minute. Eval splits sized for power:
    # POPE 150 images x 6 = 900 questions, GQA and MME 150 x 2 = 300 each, 300 captions. Sign and chart
    # images: as many as stage 2 has conversations about them (3% of 3800 each, conversations.STAGE2_MIX).
    "demo": WorldPreset(
        name="demo", image_size=48, min_objects=1, max_objects=6,
        pretrain=5000, shard_size=1000, llava_images=1500, text_images=110, chart_images=110,
        stage2=3800, pope_images=150, gqa_images=150, mme_images=150, caption_images=300,
        textvqa_images=150, chartqa_images=75, retrieval_images=200,
    ),
}


def preset_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(WorldPreset) if f.name != "name"]


def get_preset(name: str, **overrides: int) -> WorldPreset:
    """The preset `name` with `overrides` applied; ValueError listing known names/fields otherwise."""
    check_known(name, PRESETS, "preset")
    unknown = sorted(set(overrides) - set(preset_fields()))
    if unknown:
        raise ValueError(f"unknown preset field(s) {', '.join(unknown)}; known: {', '.join(preset_fields())}")
    preset = dataclasses.replace(PRESETS[name], **overrides)
    preset.validate()
    return preset
