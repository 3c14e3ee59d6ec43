"""Image processors that reproduce a tower's own preprocessing, and the RGB conversion in front of them.

    from clips_tower.adapter.processors import processor_from_preprocess, load_tower_processor, to_rgb
    proc = processor_from_preprocess({"size": 336, "resize_mode": "squash", ...})  # CLIPImageProcessor (PIL)
    proc = load_tower_processor("runs/towers/clips-l14-336")                       # exact backend
    pixels = proc(to_rgb(Image.open("scan.png")), return_tensors="pt").pixel_values

CLIPS = squash resize to SxS (no crop), bilinear, ImageNet mean/std; OpenAI = shortest side to S,
bicubic, center crop, CLIP mean/std. Both are a stock `CLIPImageProcessor`; its PIL backend matches
open_clip bit for bit (measured: 0.0). transformers saves either backend as "CLIPImageProcessor" and
`AutoImageProcessor` reloads the torchvision backend unless asked for `backend="pil"` (about 1/255
off); `load_tower_processor` always asks for the exact one.

`to_rgb` and `to_8bit` (the conversion in front of every processor) live in `clips_tower.images`,
a leaf that pretraining data uses too; they are re-exported here for the parity code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clips_tower.images import WIDE_MODES, to_8bit, to_rgb  # noqa: F401  (re-exported)
from clips_tower.io import check_known

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
def processor_from_preprocess(cfg: dict[str, Any]):
    """A stock CLIPImageProcessor (PIL backend) equal to open_clip's inference transform for `cfg`."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    size = cfg["size"]
    size = size if isinstance(size, int) else tuple(size)
    if not isinstance(size, int) and size[0] != size[1]:
        raise ValueError(f"non-square preprocessing size {size} is not supported")
    side = size if isinstance(size, int) else size[0]
    interpolation = cfg.get("interpolation", "bicubic")
    check_known(interpolation, _RESAMPLE, "interpolation")
    common = dict(
        resample=int(_RESAMPLE[interpolation]), image_mean=list(cfg["mean"]), image_std=list(cfg["std"]),
        do_convert_rgb=True, do_rescale=True, do_normalize=True, do_resize=True,
    )
    mode = cfg.get("resize_mode", "shortest")
    if mode == "squash":
        return CLIPImageProcessorPil(size={"height": side, "width": side}, do_center_crop=False,
                                     crop_size={"height": side, "width": side}, **common)
    if mode == "shortest":
        return CLIPImageProcessorPil(size={"shortest_edge": side}, do_center_crop=True,
                                     crop_size={"height": side, "width": side}, **common)
    raise ValueError(f"resize_mode {mode!r} has no exact CLIPImageProcessor equivalent (supported: squash, shortest)")


def open_clip_transform(cfg: dict[str, Any]):
    """open_clip's own inference transform for a preprocess cfg (the parity reference)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    keys = PreprocessCfg.__dataclass_fields__
    return image_transform_v2(PreprocessCfg(**{k: v for k, v in cfg.items() if k in keys}), is_train=False)


def load_tower_processor(tower_dir: str | Path):
    """The exported tower's image processor, with the exact (PIL) backend."""
    from transformers import AutoImageProcessor

    return AutoImageProcessor.from_pretrained(str(tower_dir), backend="pil")


def sample_images(seed: int = 0) -> list[tuple[str, Image.Image]]:
    """A fixed set of awkward images: square, landscape, portrait, tiny, very wide; RGB and non-RGB modes."""
    rng = np.random.default_rng(seed)

    def smooth(w: int, h: int, channels: int) -> np.ndarray:
        # gradients + low-frequency blobs + noise: resizing has real work to do
        yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
        base = [np.sin(6 * xx * (c + 1) + 3 * yy) + np.cos(5 * yy * (c + 2)) for c in range(channels)]
        a = (np.stack(base, -1) * 60 + 128 + rng.normal(0, 20, (h, w, channels)))
        return np.clip(a, 0, 255).astype(np.uint8)

    rgba = Image.fromarray(smooth(201, 333, 4))  # (H, W, 4) uint8 -> RGBA
    pal = Image.fromarray(smooth(300, 200, 3)).convert("P")
    pal.info["transparency"] = 3
    wide16 = Image.fromarray(smooth(160, 120, 1)[..., 0].astype(np.uint16) * 257)  # uint16 -> I;16
    return [
        ("square-rgb-336", Image.fromarray(smooth(336, 336, 3))),
        ("landscape-rgb-500x375", Image.fromarray(smooth(500, 375, 3))),
        ("portrait-rgba-201x333", rgba),
        ("tiny-L-17x9", Image.fromarray(smooth(17, 9, 1)[..., 0])),
        ("wide-cmyk-640x97", Image.fromarray(smooth(640, 97, 3)).convert("CMYK")),
        ("palette-transparent-300x200", pal),
        ("16bit-I;16-160x120", wide16),
    ]
