"""Frozen-tower feature cache: compute each image's projector input once, reuse it every step.

    from llava_train.feature_cache import build_feature_cache
    cache = build_feature_cache(model, dataset, device="cuda", cache_dir="runs/feature_cache")
    # dataset items now carry `image_row` instead of `pixel_values`; LlavaTrainer(feature_cache=cache)
    # projects cache.features[image_rows] and hands them to Llava through `mm_encoder_outputs`

While the tower is frozen (stage 1, and LLaVA-1.5's stage 2), the selected tower hidden states
(layer `vision_feature_layer`, CLS dropped for the "default" strategy: exactly what Llava's
projector consumes) depend only on the image. They are computed once per distinct image, kept in
memory as one (N + 1, P, D) tensor (row 0: the all-zero image used by image-less batches) and,
with `cache_dir`, stored as safetensors keyed by the image's content hash, in a file named by a
fingerprint of the tower weights + feature layer + image processor, so later runs (resume, stage
reruns, sweeps) skip the tower entirely. The model is not changed: the trainer passes projected
features through Llava's own `mm_encoder_outputs` argument, and what is saved is a stock Llava.
Training-only; not for ZeRO-3 (partitioned tower weights) or a training tower (refused).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch

from clips_tower.distributed import base_llava, is_partitioned
from clips_tower.io import atomic_path
from llava_train.model import tower_image_shape

log = logging.getLogger(__name__)


@torch.no_grad()
def tower_features(llava, pixel_values: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, P, D): the tower states Llava's projector consumes (same selection as Llava)."""
    cfg = llava.config
    hidden = llava.model.vision_tower(pixel_values, output_hidden_states=True, return_dict=True).hidden_states
    layers = cfg.vision_feature_layer if isinstance(cfg.vision_feature_layer, list) else [cfg.vision_feature_layer]
    start = 1 if cfg.vision_feature_select_strategy == "default" else 0  # drop CLS
    return torch.cat([hidden[i][:, start:] for i in layers], dim=-1)


def fingerprint(llava, image_processor) -> str:
    """Hash of the tower weights, the feature selection and the image processor."""
    h = hashlib.sha256()
    for name, p in sorted(llava.model.vision_tower.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    cfg = llava.config
    h.update(f"{cfg.vision_feature_layer}|{cfg.vision_feature_select_strategy}".encode())
    h.update(image_processor.to_json_string().encode())
    return h.hexdigest()[:24]


def _image_key(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


class FeatureCache:
    """`features[row]` for each image path in `rows`; row 0 is the all-zero image."""

    def __init__(self, features: torch.Tensor, rows: dict[Path, int]):
        self.features, self.rows = features, rows  # (N + 1, P, D)

    def projected(self, model, image_rows: torch.Tensor, dtype: torch.dtype) -> dict:
        """`mm_encoder_outputs` for Llava's forward: the projector applied to the cached rows."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        llava = base_llava(model)
        projector = llava.model.multi_modal_projector
        device = next(projector.parameters()).device
        feats = self.features[image_rows.cpu()].to(device, dtype, non_blocking=True)  # (N_images, P, D)
        return {"image": BaseModelOutputWithPooling(pooler_output=list(projector(feats)))}


def build_feature_cache(model, dataset, device: str | torch.device = "cpu", batch_size: int = 64,
                        cache_dir: str | Path | None = None) -> FeatureCache:
    """Compute (or load from `cache_dir`) the features of every image in `dataset`; attach them to it."""
    llava = base_llava(model)
    if any(p.requires_grad for p in llava.model.vision_tower.parameters()):
        raise ValueError("feature_cache needs a frozen vision tower (train_tower is on)")
    if any(is_partitioned(p) for p in llava.model.vision_tower.parameters()):
        raise ValueError("feature_cache does not support ZeRO-3 (partitioned tower); use ZeRO-2 or turn it off")
    tower = llava.model.vision_tower
    dtype = next(tower.parameters()).dtype
    home = next(tower.parameters()).device
    tower.to(device)
    paths = dataset.image_paths
    stored: dict[str, torch.Tensor] = {}
    file = None
    if cache_dir is not None:
        file = Path(cache_dir) / f"features-{fingerprint(llava, dataset.processor.image_processor)}.safetensors"
        if file.is_file():
            from safetensors.torch import load_file

            stored = load_file(str(file))
    keys = {p: _image_key(p) if p.is_file() else str(p) for p in paths} if file is not None else {p: str(p) for p in paths}
    missing = [p for p in paths if keys[p] not in stored]
    if "zero_image" not in stored:
        zeros = torch.zeros((1, *tower_image_shape(llava.config.vision_config)), dtype=dtype, device=device)
        stored["zero_image"] = tower_features(llava, zeros)[0].cpu()
    bad: dict[Path, str] = {}
    for k in range(0, len(missing), batch_size):
        chunk, pixels = _pixels(dataset, missing[k:k + batch_size], bad)
        if not chunk:
            continue
        for p, f in zip(chunk, tower_features(llava, pixels.to(device, dtype)).cpu()):  # (B, P, D)
            stored[keys[p]] = f.contiguous()
    paths = [p for p in paths if p not in bad]  # their samples are replaced at load time, and counted
    tower.to(home)
    if file is not None and (missing or not file.is_file()):
        from safetensors.torch import save_file

        file.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(file) as tmp:
            save_file(stored, str(tmp))
    features = torch.stack([stored["zero_image"]] + [stored[keys[p]] for p in paths])  # (N + 1, P, D)
    cache = FeatureCache(features, {p: i + 1 for i, p in enumerate(paths)})
    dataset.image_rows, dataset.image_bad = cache.rows, bad
    log.info("feature cache: %d images (%d computed, %d loaded), %s, %.1f MiB%s", len(paths), len(missing),
             len(paths) - len(missing), tuple(features.shape), features.numel() * features.element_size() / 2**20,
             f", file {file}" if file else "")
    return cache


def _pixels(dataset, paths: list[Path], bad: dict[Path, str]) -> tuple[list[Path], torch.Tensor | None]:
    """The paths that decode and their pixels (B, 3, H, W); the others go into `bad` with their reason."""
    from llava_train.samples import BadSample

    good, pixels = [], []
    for p in paths:
        try:
            pixels.append(dataset.image_pixels(p))
            good.append(p)
        except BadSample as e:
            bad[p] = e.reason
    return good, (torch.stack(pixels) if pixels else None)
