"""The CLIPS model: an open_clip CLIP (vision + text towers from open_clip's own classes) plus our captioner.

    from clips_tower.model import load_arch, CLIPSModel
    arch = load_arch("configs/clips/models/tiny.json")     # open_clip model JSON + "captioner_cfg"
    model = CLIPSModel(arch, use_captioner=True)
    out = model(images, web_ids=..., syn_ids=..., cap_web_ids=..., cap_web_valid=..., target_valid=...)

`model.clip` is a stock `open_clip.CLIP` / `CustomTextCLIP`, chosen by what the config holds
exactly as open_clip's factory does; it is what gets exported. The captioner is training-only.
This file knows nothing of parallelism or losses (see `losses.py`, `train.py`).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from open_clip.model import CLIP, CustomTextCLIP
from open_clip.transformer import text_global_pool
from torch import nn

from clips_tower.captioner import Captioner

CAPTIONER_KEYS = ("width", "layers", "heads", "num_queries", "prefix_len", "mlp_ratio")


def load_arch(path: str | Path) -> dict:
    """Read an architecture JSON (open_clip model config, optionally with "captioner_cfg")."""
    from clips_tower.inputs import read_json_object

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"architecture JSON not found: {path}")
    arch = read_json_object(path, "architecture JSON")
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in arch]
    if missing:
        raise ValueError(f"{path}: not an open_clip model config (missing {', '.join(missing)})")
    return arch


def open_clip_cfg(arch: dict) -> dict:
    """The part of an architecture stock open_clip understands (drops our "captioner_cfg")."""
    return {k: copy.deepcopy(v) for k, v in arch.items() if k != "captioner_cfg"}


def build_open_clip(model_cfg: dict) -> CLIP | CustomTextCLIP:
    """Instantiate the open_clip class the config implies (factory rule: custom_text or an HF text tower)."""
    cfg = copy.deepcopy(model_cfg)
    custom_text = cfg.pop("custom_text", False) or "hf_model_name" in cfg.get("text_cfg", {})
    if "multimodal_cfg" in cfg:
        raise ValueError("a CoCa config (multimodal_cfg) is not a CLIPS architecture; use captioner_cfg")
    return (CustomTextCLIP if custom_text else CLIP)(**cfg)


class CLIPSModel(nn.Module):
    def __init__(self, arch: dict, use_captioner: bool = True):
        super().__init__()
        self.clip = build_open_clip(open_clip_cfg(arch))
        self.captioner = None
        if use_captioner:
            cap = arch.get("captioner_cfg")
            if not cap:
                raise ValueError("the method uses the captioner but the architecture has no captioner_cfg")
            unknown = sorted(set(cap) - set(CAPTIONER_KEYS))
            if unknown:
                raise ValueError(f"unknown captioner_cfg key(s) {unknown}; known: {', '.join(CAPTIONER_KEYS)}")
            self.clip.visual.output_tokens = True  # one vision pass gives pooled features and patch tokens
            self.captioner = Captioner(
                vision_width=self.clip.visual.transformer.width,
                vocab_size=int(arch["text_cfg"].get("vocab_size", 49408)),
                **cap,
            )

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.clip.set_grad_checkpointing(enable)
        if self.captioner is not None:
            self.captioner.set_grad_checkpointing(enable)

    @property
    def text_context_length(self) -> int:
        return int(self.clip.context_length)

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, 3, H, W) -> normalized (B, D) features and, with a captioner, (B, N, Cv) patch tokens."""
        out = self.clip.visual(images)
        pooled, tokens = out if isinstance(out, tuple) else (out, None)
        return F.normalize(pooled, dim=-1), tokens

    def encode_text(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids with T <= context -> normalized (B, D).

        The same computation as `clip.encode_text` on the first T positions; with a causal mask and
        eot pooling this equals encoding the row padded to the full context, at a fraction of the cost.
        """
        clip = self.clip
        if isinstance(clip, CustomTextCLIP):
            if ids.shape[1] != clip.text.num_pos and clip.text.attn_mask is not None:
                ids = F.pad(ids, (0, clip.text.num_pos - ids.shape[1]), value=clip.text.pad_id)
            return F.normalize(clip.text(ids), dim=-1)
        t = ids.shape[1]
        cast = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(ids).to(cast) + clip.positional_embedding[:t].to(cast)  # (B, T, C)
        mask = clip.attn_mask[:t, :t] if clip.attn_mask is not None else None
        x = clip.ln_final(clip.transformer(x, attn_mask=mask))
        x = text_global_pool(x, ids, clip.text_pool_type, eos_token_id=clip.text_eos_id)  # (B, C)
        if clip.text_projection is not None:
            x = clip.text_projection(x) if isinstance(clip.text_projection, nn.Linear) else x @ clip.text_projection
        return F.normalize(x, dim=-1)

    def forward(
        self,
        images: torch.Tensor,
        web_ids: torch.Tensor | None = None,
        syn_ids: torch.Tensor | None = None,
        cap_web_ids: torch.Tensor | None = None,
        cap_web_valid: torch.Tensor | None = None,
        target_valid: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Everything one training step needs; a view whose ids are None is skipped."""
        image_features, tokens = self.encode_image(images)
        out = {"image_features": image_features, "logit_scale": self.clip.logit_scale.exp()}
        if web_ids is not None:
            out["web_features"] = self.encode_text(web_ids)
        if syn_ids is not None:
            out["syn_features"] = self.encode_text(syn_ids)
        if self.captioner is not None and cap_web_ids is not None:
            out["caption_logits"] = self.captioner(tokens, cap_web_ids, cap_web_valid, target_valid)
        return out
