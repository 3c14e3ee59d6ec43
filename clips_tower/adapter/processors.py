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

`to_rgb` converts any PIL mode the way the stock processor does (alpha composited on white,
palette/CMYK/L converted by PIL) but first scales 16-bit and 32-bit images to 8 bits; PIL's own
conversion saturates them (a 16-bit value of 1000 becomes 255), and so does the stock processor.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from clips_tower.io import check_known

_RESAMPLE = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit / 32-bit integer / float images to 8-bit 'L'; other modes pass through unchanged."""
    if image.mode not in WIDE_MODES:
        return image
    a = np.asarray(image).astype(np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and a.max(initial=0) > 255):
        a = a / 257.0  # 0..65535 -> 0..255
    elif image.mode == "F" and a.max(initial=0) <= 1.0:
        a = a * 255.0  # float images in [0, 1]
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))  # (H, W) uint8 -> L


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image -> RGB: wide modes scaled to 8 bits, transparency composited on white."""
    image = to_8bit(image)
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


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
