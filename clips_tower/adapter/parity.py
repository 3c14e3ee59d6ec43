"""Numerical parity between a source tower and its exported HF model + processor.

    from clips_tower.adapter.parity import check_parity
    report = check_parity(load_source("tiny", random_init=True), "runs/towers/tiny")
    print(report.format()); assert report.ok

Two comparisons on a fixed set of awkward images (`processors.sample_images`: non-square, tiny,
RGBA, L, CMYK, palette with transparency, 16-bit):
(a) pixels: open_clip's own inference transform on the RGB-converted image vs the exported
    processor (PIL backend) on the image as given; the torchvision backend that `AutoImageProcessor`
    picks by default is reported too, for information;
(b) features: open_clip `forward_intermediates(indices=[layer])` patch tokens vs the exported
    model's `hidden_states[layer][:, 1:]` (layer = the LLaVA feature layer, -2), same input pixels.
Differences are max |a-b| and max |a-b| / max |a|. fp32 passes at 1e-5 relative. In bfloat16 the
exported model must be within 2x of open_clip's own bfloat16 error (both against fp32 open_clip).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from clips_tower.adapter.processors import load_tower_processor, open_clip_transform, sample_images, to_8bit, to_rgb
from clips_tower.adapter.sources import SourceTower
from clips_tower.io import check_known

FP32_REL_TOL = 1e-5
PIXEL_TOL = 1e-5
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass
class ParityReport:
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, what: str, ref: torch.Tensor, got: torch.Tensor, tol: float | None, **extra) -> dict:
        diff = (ref.float() - got.float()).abs().max().item()
        rel = diff / max(ref.float().abs().max().item(), 1e-12)
        row = {"what": what, "max_abs": diff, "max_rel": rel, "tol_rel": tol,
               "ok": True if tol is None else rel <= tol, **extra}
        self.rows.append(row)
        return row

    @property
    def ok(self) -> bool:
        return all(r["ok"] for r in self.rows)

    def format(self) -> str:
        lines = []
        for r in self.rows:
            tol = "info" if r["tol_rel"] is None else f"tol {r['tol_rel']:.1e}"
            flag = "ok  " if r["ok"] else "FAIL"
            lines.append(f"{flag} {r['what']:<58} max_abs {r['max_abs']:.3e}  max_rel {r['max_rel']:.3e}  ({tol})")
        lines.append("PARITY OK" if self.ok else "PARITY FAILED")
        return "\n".join(lines)


def _reference_pixels(src: SourceTower, image) -> torch.Tensor:
    if src.kind == "open_clip":
        return open_clip_transform(src.preprocess_cfg)(to_rgb(image))
    return torch.as_tensor(src.hf_processor(to_8bit(image), return_tensors="pt")["pixel_values"][0])


@torch.no_grad()
def _reference_tokens(src: SourceTower, pixels: torch.Tensor, layer: int) -> torch.Tensor:
    if src.kind == "open_clip":
        out = src.visual.forward_intermediates(
            pixels, indices=[layer], stop_early=True, intermediates_only=True, output_fmt="NLC")
        return out["image_intermediates"][0]  # (B, N, C), class token already split off
    return src.hf_model(pixel_values=pixels, output_hidden_states=True).hidden_states[layer][:, 1:]


def check_parity(src: SourceTower, exported, *, dtype: str = "float32", device: str = "cpu",
                 token_images: int = 2, layer: int = -2, images=None) -> ParityReport:
    """Compare `src` with `exported` (a tower directory, or an in-memory (model, processor) pair)."""
    from transformers import AutoImageProcessor, AutoModel

    check_known(dtype, DTYPES, "dtype")
    if isinstance(exported, (str, Path)):
        model = AutoModel.from_pretrained(str(exported), dtype=torch.float32)
        processor = load_tower_processor(exported)
        fast = AutoImageProcessor.from_pretrained(str(exported))  # what stock code gets by default
    else:
        model, processor = exported
        fast = None
    images = sample_images() if images is None else images
    report = ParityReport()

    # (a) pixels, every image
    ref_pixels = []
    for name, image in images:
        ref = _reference_pixels(src, image)
        got = torch.as_tensor(processor(to_8bit(image), return_tensors="pt")["pixel_values"][0])
        report.add(f"pixels {name} [{image.mode}]", ref, got, PIXEL_TOL)
        if fast is not None and type(fast) is not type(processor):
            got_fast = torch.as_tensor(fast(to_8bit(image), return_tensors="pt")["pixel_values"][0])
            report.add(f"pixels {name} [{type(fast).__name__}, default backend]", ref, got_fast, None)
        ref_pixels.append(ref)

    # (b) layer features on the first `token_images` images, one batch, identical input pixels
    pixels = torch.stack(ref_pixels[:max(1, token_images)]).to(device)  # (B, 3, S, S)
    ref_model = src.visual if src.kind == "open_clip" else src.hf_model
    ref_model.to(device=device, dtype=torch.float32)
    ref32 = _reference_tokens(src, pixels, layer)
    model.eval().to(device=device, dtype=DTYPES[dtype])
    with torch.no_grad():
        got = model(pixel_values=pixels.to(DTYPES[dtype]), output_hidden_states=True).hidden_states[layer][:, 1:]
    tag = f"layer {layer} patch tokens {tuple(ref32.shape)} {dtype} on {device}"
    if dtype == "float32":
        report.add(tag, ref32, got, FP32_REL_TOL)
    else:  # own-dtype noise of open_clip sets the bar
        ref_model.to(dtype=DTYPES[dtype])
        ref_low = _reference_tokens(src, pixels.to(DTYPES[dtype]), layer)
        base = report.add(f"open_clip itself in {dtype} vs float32 (baseline)", ref32, ref_low, None)
        report.add(tag + " vs float32 open_clip", ref32, got, max(2 * base["max_rel"], FP32_REL_TOL))
        report.add(f"exported vs open_clip, both {dtype}", ref_low, got, None)
        ref_model.to(dtype=torch.float32)
    return report
