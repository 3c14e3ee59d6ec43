"""Registry of named vision towers: exact key -> where the weights come from + the LLaVA settings.

    from clips_tower.adapter.registry import get_tower
    spec = get_tower("clips-l14-336")      # unknown names raise ValueError listing the known ones
    spec.source, spec.arch, spec.num_image_tokens   # 'hf-hub:UCSC-VLAA/...', 'ViT-L-14-CLIPS-336', 576

`source` is where real weights live (an open_clip hub name or a Hugging Face CLIP id; None for the
embedded presets, whose weights come from `clips-llava clips train`). `arch` is the open_clip
architecture used with `--random-init`: a file stem in `configs/clips/models/` or an open_clip
built-in model name. Choosing a tower for LLaVA is this one key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clips_tower.adapter.tower_facts import llava_block
from clips_tower.images import PREPROCESS  # noqa: F401  (re-exported: TowerSpec.preprocess keys it)
from clips_tower.io import CHECKOUT, lookup

# The repo's open_clip architecture JSONs, read from the checkout (the package is installed editable).
CONFIG_DIR = CHECKOUT / "configs" / "clips" / "models"

# The preprocessing recipes (a tower spec names one) live in clips_tower.images, re-exported here.


@dataclass(frozen=True)
class TowerSpec:
    name: str
    source: str | None  # real weights; None = train your own (embedded presets)
    arch: str  # open_clip architecture for --random-init
    image_size: int
    patch_size: int
    hf_class: str  # "ViTModel" (CLIPS-style, no pre-LN) or "CLIPVisionModel" (OpenAI-style)
    preprocess: str  # key of PREPROCESS
    vision_feature_layer: int = -2  # LLaVA-1.5: penultimate block
    vision_feature_select_strategy: str = "default"  # patch tokens, CLS dropped

    @property
    def num_image_tokens(self) -> int:
        """Image tokens LLaVA sees per image (the "default" strategy: patch tokens only)."""
        return llava_block(self, self.vision_feature_layer, self.vision_feature_select_strategy)["image_seq_length"]


TOWERS: dict[str, TowerSpec] = {
    "clips-l14-336": TowerSpec(
        "clips-l14-336", "hf-hub:UCSC-VLAA/ViT-L-14-CLIPS-Recap-DataComp-1B", "ViT-L-14-CLIPS-336",
        336, 14, "ViTModel", "clips"),
    "clips-l14-224": TowerSpec(
        "clips-l14-224", "hf-hub:UCSC-VLAA/ViT-L-14-CLIPS-224-Recap-DataComp-1B", "ViT-L-14-CLIPS-224",
        224, 14, "ViTModel", "clips"),
    "clips-h14-224": TowerSpec(
        "clips-h14-224", "hf-hub:UCSC-VLAA/ViT-H-14-CLIPS-224-Recap-DataComp-1B", "ViT-H-14-CLIPS-224",
        224, 14, "ViTModel", "clips"),
    # The LLaVA-1.5 baseline tower. Random init uses open_clip's OpenAI-shaped config (QuickGELU).
    "openai-clip-l14-336": TowerSpec(
        "openai-clip-l14-336", "openai/clip-vit-large-patch14-336", "ViT-L-14-336-quickgelu",
        336, 14, "CLIPVisionModel", "openai"),
    # Embedded-world presets (the synthetic world's towers): weights come from `clips-llava clips train`.
    "tiny": TowerSpec("tiny", None, "tiny", 32, 8, "ViTModel", "clips"),
    "demo": TowerSpec("demo", None, "demo", 64, 8, "ViTModel", "clips"),
}


def get_tower(name: str) -> TowerSpec:
    """Exact-key lookup; an unknown name is a ValueError that lists the known towers."""
    return lookup(TOWERS, name, "tower", label="known towers")


def arch_json(arch: str) -> Path | None:
    """The repo JSON for an architecture name, or None if it is not one of ours."""
    path = CONFIG_DIR / f"{arch}.json"
    return path if path.is_file() else None
