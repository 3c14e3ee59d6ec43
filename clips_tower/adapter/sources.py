"""Resolve a `--source` string into a loaded tower: an open_clip ViT (+ its preprocessing) or an HF CLIP.

    from clips_tower.adapter.sources import load_source
    src = load_source("clips-l14-336", random_init=True)          # registry key, random weights
    src = load_source("configs/clips/models/tiny.json", random_init=True, seed=0)
    src = load_source("runs/clips/tiny/export")                    # local open_clip dir (clips train)
    src = load_source("hf-hub:UCSC-VLAA/ViT-L-14-CLIPS-Recap-DataComp-1B")   # needs the hub
    src = load_source("openai/clip-vit-large-patch14-336")         # HF CLIP vision id or directory

Only the vision half is ever built: exporting a tower never needs the text encoder, and skipping it
saves 300M parameters at ViT-H. Keys open_clip does not know (our `captioner_cfg`) are ignored.
Random init is seeded and also randomises LayerNorm affines and biases (which open_clip initialises
to constants), so a mapping mistake in any tensor shows up in the parity check. Weights from a
checkpoint are loaded strictly into the same open_clip module.
Every failure is a `SourceError` (a ValueError) with one line naming the problem.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from clips_tower.adapter.registry import PREPROCESS, TOWERS, TowerSpec, arch_json, get_tower
from clips_tower.inputs import is_hub_id
from clips_tower.io import check_known


class SourceError(ValueError):
    """A --source that cannot be loaded; the message is one line."""


@dataclass
class SourceTower:
    name: str  # what the user passed
    kind: str  # "open_clip" (visual + preprocess_cfg) or "hf_clip" (hf_model + hf_processor)
    visual: nn.Module | None = None
    preprocess_cfg: dict[str, Any] | None = None
    hf_model: nn.Module | None = None
    hf_processor: Any = None
    random_init: bool = False
    seed: int | None = None
    spec: TowerSpec | None = None
    info: dict[str, Any] = field(default_factory=dict)  # provenance written next to the export


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def _hub_error(what: str, exc: Exception) -> SourceError:
    if _offline():
        return SourceError(f"cannot load {what}: offline (HF_HUB_OFFLINE=1) and not in the local HF cache")
    return SourceError(f"cannot load {what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


def _arch_json_config(path: Path) -> dict[str, Any]:
    """An open_clip model config from an architecture JSON file."""
    if not path.is_file():
        raise SourceError(f"architecture JSON not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SourceError(f"{path} is not valid JSON: {e}") from e


def _find_arch(target: str) -> tuple[Path | None, dict[str, Any] | None]:
    """Where `target` names an open_clip architecture: (its JSON path: a path ending .json or a repo
    architecture name, None) or (None, an open_clip built-in's config); (None, None) if it is neither.
    Each lookup runs once; the JSON is read later, so a non-architecture error comes first."""
    path = Path(target) if target.endswith(".json") else arch_json(target)
    if path is not None:
        return path, None
    import open_clip

    return None, open_clip.get_model_config(target)


def _random_fill(visual: nn.Module, seed: int) -> None:
    """Seeded random values for every parameter, LayerNorm affines and biases included.

    open_clip initialises norms to 1/0 and biases to 0, which would hide a swapped or missing
    norm/bias mapping from the parity check. Uniform draws keep this fast at ViT-H size.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in visual.named_parameters():
            if name.endswith("bias"):
                p.uniform_(-0.03, 0.03, generator=g)
            elif p.ndim == 1 and name != "class_embedding":  # norm scales around 1
                p.uniform_(0.8, 1.2, generator=g)
            else:  # matrices, conv, class/position embeddings: std about 1/sqrt(fan_in)
                bound = (3.0 / (p[0].numel() if p.ndim > 1 else p.numel())) ** 0.5
                p.uniform_(-bound, bound, generator=g)


def build_visual(model_cfg: dict[str, Any], seed: int | None = 0) -> nn.Module:
    """open_clip's own vision tower for a model config (unknown top-level keys are ignored).

    Built on the meta device (no init cost); `seed` fills it with random weights, `seed=None` leaves
    it on meta for `load_state_dict(..., assign=True)`.
    """
    from open_clip.model import _build_vision_tower  # the vision half of open_clip's factory

    for key in ("embed_dim", "vision_cfg"):
        if key not in model_cfg:
            raise SourceError(f"open_clip model config has no {key!r}")
    try:
        with torch.device("meta"):
            visual = _build_vision_tower(
                model_cfg["embed_dim"], dict(model_cfg["vision_cfg"]), quick_gelu=bool(model_cfg.get("quick_gelu", False)))
    except TypeError as e:  # an unknown vision_cfg field
        raise SourceError(f"bad open_clip vision_cfg: {e}") from e
    except (AssertionError, ValueError) as e:
        raise SourceError(f"open_clip cannot build this vision_cfg: {e}") from e
    from clips_tower.adapter.convert import describe_visual

    describe_visual(visual)  # refuse unmappable towers before spending time on weights
    if any(True for _ in visual.buffers()):
        raise SourceError("vision tower has buffers; not supported by the adapter")
    if seed is not None:
        visual.to_empty(device="cpu")
        _random_fill(visual, seed)
    return visual.eval()


def _preprocess_cfg(visual: nn.Module, model_cfg: dict, overlay: dict | None, recipe: str | None) -> dict:
    """open_clip PreprocessCfg dict: defaults <- recipe (or the tower family's) <- overlay; size from the tower."""
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg

    if recipe is None and not overlay:
        # No preprocessing given: a tower without pre-LayerNorm is CLIPS-family, otherwise OpenAI-family.
        recipe = "clips" if model_cfg["vision_cfg"].get("no_ln_pre", False) else "openai"
    if recipe is not None:
        check_known(recipe, PREPROCESS, "preprocessing", error=SourceError)
    cfg = asdict(PreprocessCfg())
    cfg.update(PREPROCESS.get(recipe, {}))
    cfg.update(overlay or {})
    cfg["size"] = getattr(visual, "image_size", cfg["size"])
    return cfg


def _load_open_clip_dir(path: Path, name: str, random_init: bool, seed: int, recipe: str | None) -> SourceTower:
    """A local open_clip directory: open_clip_config.json {model_cfg, preprocess_cfg} + weights."""
    cfg_path = path / "open_clip_config.json"
    try:
        full = json.loads(cfg_path.read_text())
        model_cfg = full["model_cfg"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise SourceError(f"{cfg_path}: not a valid open_clip config with 'model_cfg' ({e})") from e
    visual = build_visual(model_cfg, seed=seed if random_init else None)
    if not random_init:
        sd = _read_checkpoint(path)
        sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
        vis = {k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")}
        if not vis:
            raise SourceError(f"{path}: checkpoint has no 'visual.*' weights")
        try:
            visual.load_state_dict(vis, strict=True, assign=True)
        except RuntimeError as e:
            raise SourceError(f"{path}: vision weights do not match model_cfg: {str(e).splitlines()[0]}") from e
    pre = _preprocess_cfg(visual, model_cfg, full.get("preprocess_cfg"), recipe)
    return SourceTower(name, "open_clip", visual=visual.eval(), preprocess_cfg=pre, random_init=random_init,
                       seed=seed if random_init else None, info={"model_cfg": model_cfg})


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    st = path / "open_clip_model.safetensors"
    if st.is_file():
        from safetensors.torch import load_file

        from clips_tower.inputs import InputError, check_safetensors

        try:
            check_safetensors(st)  # truncated / corrupt: one line naming the file
        except InputError as e:
            raise SourceError(str(e)) from None
        return load_file(str(st))
    pt = path / "open_clip_pytorch_model.bin"
    if pt.is_file():
        try:
            return torch.load(pt, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated zip, not a checkpoint, or a pickle weights_only refuses
            why = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0][:160]
            raise SourceError(f"{pt}: not a readable torch checkpoint ({why})") from None
    raise SourceError(f"{path}: no open_clip_model.safetensors or open_clip_pytorch_model.bin")


def _load_hub_open_clip(name: str, recipe: str | None) -> SourceTower:
    import open_clip

    try:
        model = open_clip.create_model_from_pretrained(name, return_transform=False)
    except Exception as e:  # network, cache or config failure: one line
        raise _hub_error(name, e) from e
    visual = model.visual.eval()
    pre = dict(getattr(visual, "preprocess_cfg", {}) or {})
    if recipe is not None:
        pre.update(PREPROCESS[recipe])
    return SourceTower(name, "open_clip", visual=visual, preprocess_cfg=pre)


def _load_hf_clip(name: str) -> SourceTower:
    from transformers import AutoConfig, AutoImageProcessor, CLIPVisionModel

    try:
        config = AutoConfig.from_pretrained(name)
    except Exception as e:
        if Path(name).exists():
            raise SourceError(f"{name}: not a Hugging Face model directory ({e})") from e
        raise _hub_error(name, e) from e
    if config.model_type not in ("clip", "clip_vision_model"):
        raise SourceError(f"{name}: model_type {config.model_type!r} is not a CLIP vision model")
    try:
        model = CLIPVisionModel.from_pretrained(name, dtype=torch.float32).eval()
        processor = AutoImageProcessor.from_pretrained(name, backend="pil")  # exact PIL backend
    except Exception as e:
        if Path(name).exists():
            raise SourceError(f"{name}: cannot load CLIP vision model/processor: {type(e).__name__}: {e}") from e
        raise _hub_error(name, e) from e
    return SourceTower(name, "hf_clip", hf_model=model, hf_processor=processor)


def load_source(source: str, random_init: bool = False, seed: int = 0, preprocess: str | None = None) -> SourceTower:
    """Load what `--source` names (see the module docstring for the accepted forms)."""
    spec = None
    target = source
    if source in TOWERS:
        spec = get_tower(source)
        target = spec.arch if random_init else spec.source
        preprocess = preprocess or spec.preprocess
        if target is None:
            raise SourceError(
                f"tower {source!r} has no published weights: pass --random-init, or --model the directory "
                f"that `clips-llava clips train` exported")
    out = _resolve(target, source, random_init, seed, preprocess)
    out.spec = spec
    out.info.update({"source": source, "resolved": target, "random_init": random_init,
                     "seed": seed if random_init else None})
    return out


def _resolve(target: str, name: str, random_init: bool, seed: int, recipe: str | None) -> SourceTower:
    path = Path(target[len("local-dir:"):] if target.startswith("local-dir:") else target)
    if target.startswith("hf-hub:"):
        if random_init:
            raise SourceError(f"--random-init needs an architecture, not a hub checkpoint ({target})")
        return _load_hub_open_clip(target, recipe)
    if path.is_dir() and (path / "open_clip_config.json").is_file():
        return _load_open_clip_dir(path, name, random_init, seed, recipe)
    if target.startswith("local-dir:"):
        raise SourceError(f"{path}: no open_clip_config.json (expected an open_clip directory)")
    if path.is_dir() and (path / "config.json").is_file():
        if random_init:
            raise SourceError(f"--random-init is for open_clip architectures, not HF model directories ({target})")
        return _load_hf_clip(target)
    if path.is_dir():
        raise SourceError(f"{path}: neither an open_clip directory (open_clip_config.json) nor an HF one (config.json)")
    arch_path, model_cfg = _find_arch(target)
    if arch_path is not None or model_cfg is not None:
        if not random_init:
            raise SourceError(f"{target} is an architecture without weights: pass --random-init")
        if arch_path is not None:
            model_cfg = _arch_json_config(arch_path)
        visual = build_visual(model_cfg, seed=seed)
        return SourceTower(name, "open_clip", visual=visual, preprocess_cfg=_preprocess_cfg(visual, model_cfg, None, recipe),
                           random_init=True, seed=seed, info={"model_cfg": model_cfg})
    if is_hub_id(target):
        if random_init:
            raise SourceError(f"--random-init is for open_clip architectures, not HF model ids ({target})")
        return _load_hf_clip(target)
    raise SourceError(
        f"cannot resolve source {target!r}: expected a tower name ({', '.join(TOWERS)}), an open_clip directory, "
        f"hf-hub:ORG/NAME, an architecture JSON or open_clip model name (with --random-init), or an HF CLIP id/dir")
