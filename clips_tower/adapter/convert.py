"""Exact weight mappings from an open_clip ViT onto stock transformers vision models.

    from clips_tower.adapter.convert import convert_visual
    hf_model = convert_visual(open_clip_model.visual)   # ViTModel or CLIPVisionModel, fp32, eval

* CLIPS-style (no pre-LayerNorm): `ViTModel`. open_clip's patch conv has no bias -> ViT's is zero.
  open_clip's `ln_post` becomes ViT's final `layernorm` (applied to all tokens; open_clip applies it
  after average pooling, so only the per-token features, not the pooled embedding, carry over).
  ViT's pooler has no open_clip counterpart: it is exported as zeros (LLaVA never uses it).
* OpenAI-style (pre-LayerNorm): `CLIPVisionModel` (`pre_layrnorm`, `post_layernorm`).

Both keep the class token first, so `hidden_states[k]` lines up with open_clip's block outputs and
`hidden_states[-2][:, 1:]` equals `forward_intermediates(indices=[-2])` patch tokens.
Anything a stock class cannot represent exactly raises `UnsupportedTower` naming the feature.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from accelerate import init_empty_weights
from torch import nn


class UnsupportedTower(ValueError):
    """The tower uses a feature no stock transformers class represents exactly."""


@dataclass(frozen=True)
class VisualSpec:
    width: int
    layers: int
    heads: int
    intermediate: int
    patch_size: int
    image_size: int
    eps: float
    act: str  # transformers ACT2FN key
    ln_pre: bool

    @property
    def hf_class(self) -> str:
        return "CLIPVisionModel" if self.ln_pre else "ViTModel"


def _act_name(module: nn.Module) -> str:
    from open_clip.transformer import QuickGELU

    if isinstance(module, QuickGELU):
        return "quick_gelu"
    if isinstance(module, nn.GELU):
        return {"none": "gelu", "tanh": "gelu_pytorch_tanh"}[module.approximate]
    raise UnsupportedTower(f"activation {type(module).__name__} (only GELU, GELU-tanh, QuickGELU map exactly)")


def describe_visual(visual: nn.Module) -> VisualSpec:
    """Read the architecture off an open_clip vision tower; refuse what cannot be mapped exactly."""
    from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

    if not isinstance(visual, VisionTransformer):
        kind = {"TimmModel": "a timm trunk", "ModifiedResNet": "a ResNet trunk"}.get(type(visual).__name__)
        raise UnsupportedTower(f"vision tower is {kind or type(visual).__name__}, not an open_clip ViT")
    if getattr(visual, "attn_pool", None) is not None:
        raise UnsupportedTower("attentional pooling (attn_pool) has no stock HF equivalent")
    if getattr(visual, "class_embedding", None) is None:
        raise UnsupportedTower("no class token")
    if visual.image_size[0] != visual.image_size[1] or visual.patch_size[0] != visual.patch_size[1]:
        raise UnsupportedTower(f"non-square image/patch size {visual.image_size}/{visual.patch_size}")
    if visual.conv1.bias is not None:
        raise UnsupportedTower("patch embedding with bias")
    blocks = visual.transformer.resblocks
    norms = [] if isinstance(visual.ln_pre, nn.Identity) else [visual.ln_pre]
    norms.append(visual.ln_post)
    acts = set()
    for i, blk in enumerate(blocks):
        if type(blk) is not ResidualAttentionBlock:
            raise UnsupportedTower(f"custom attention block {type(blk).__name__} (qk_norm / scaled attention / scale_*)")
        if not (isinstance(blk.ls_1, nn.Identity) and isinstance(blk.ls_2, nn.Identity)):
            raise UnsupportedTower("layer scale (ls_init_value)")
        if hasattr(blk, "ln_1_kv"):
            raise UnsupportedTower("cross-attention block")
        attn = blk.attn
        if not isinstance(attn, nn.MultiheadAttention) or attn.in_proj_weight is None or attn.in_proj_bias is None:
            raise UnsupportedTower("attention without a fused biased qkv projection")
        norms += [blk.ln_1, blk.ln_2]
        acts.add(_act_name(blk.mlp.gelu))
    for n in norms:
        if not isinstance(n, nn.LayerNorm) or n.weight is None or n.bias is None:
            raise UnsupportedTower(f"normalisation {type(n).__name__} (only affine LayerNorm maps exactly)")
    eps = {float(n.eps) for n in norms}
    if len(eps) != 1 or len(acts) != 1:
        raise UnsupportedTower(f"mixed LayerNorm eps {sorted(eps)} or activations {sorted(acts)}")
    width = visual.conv1.out_channels
    return VisualSpec(
        width=width, layers=len(blocks), heads=blocks[0].attn.num_heads,
        intermediate=blocks[0].mlp.c_fc.out_features, patch_size=visual.patch_size[0],
        image_size=visual.image_size[0], eps=eps.pop(), act=acts.pop(), ln_pre=not isinstance(visual.ln_pre, nn.Identity),
    )


# Per-block weight names in each target class, by role. open_clip's names are fixed (ln_1, attn, ln_2, mlp).
_VIT_BLOCK = {"ln_1": "layernorm_before", "q": "attention.q_proj", "k": "attention.k_proj",
              "v": "attention.v_proj", "o": "attention.o_proj", "ln_2": "layernorm_after",
              "fc1": "mlp.fc1", "fc2": "mlp.fc2"}
_CLIP_BLOCK = {"ln_1": "layer_norm1", "q": "self_attn.q_proj", "k": "self_attn.k_proj",
               "v": "self_attn.v_proj", "o": "self_attn.out_proj", "ln_2": "layer_norm2",
               "fc1": "mlp.fc1", "fc2": "mlp.fc2"}


def _block_state(blk, prefix: str, names: dict[str, str]) -> dict[str, torch.Tensor]:
    """One open_clip residual block as `prefix + names[role] + .weight/.bias` tensors."""
    # open_clip fuses q,k,v into in_proj_weight (3C, C) / in_proj_bias (3C,), in that order.
    qw, kw, vw = blk.attn.in_proj_weight.chunk(3, dim=0)
    qb, kb, vb = blk.attn.in_proj_bias.chunk(3, dim=0)
    by_role = {
        "ln_1": (blk.ln_1.weight, blk.ln_1.bias), "q": (qw, qb), "k": (kw, kb), "v": (vw, vb),
        "o": (blk.attn.out_proj.weight, blk.attn.out_proj.bias), "ln_2": (blk.ln_2.weight, blk.ln_2.bias),
        "fc1": (blk.mlp.c_fc.weight, blk.mlp.c_fc.bias), "fc2": (blk.mlp.c_proj.weight, blk.mlp.c_proj.bias),
    }
    return {f"{prefix}{names[role]}.{kind}": t
            for role, (w, b) in by_role.items() for kind, t in (("weight", w), ("bias", b))}


def _to_vit(visual: nn.Module, s: VisualSpec) -> nn.Module:
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        hidden_size=s.width, num_hidden_layers=s.layers, num_attention_heads=s.heads,
        intermediate_size=s.intermediate, hidden_act=s.act, layer_norm_eps=s.eps, image_size=s.image_size,
        patch_size=s.patch_size, num_channels=3, qkv_bias=True, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    sd = {
        "embeddings.cls_token": visual.class_embedding.reshape(1, 1, -1),  # (C,) -> (1, 1, C)
        "embeddings.position_embeddings": visual.positional_embedding.unsqueeze(0),  # (N+1, C) -> (1, N+1, C)
        "embeddings.patch_embeddings.projection.weight": visual.conv1.weight,
        "embeddings.patch_embeddings.projection.bias": torch.zeros(s.width),
        "layernorm.weight": visual.ln_post.weight, "layernorm.bias": visual.ln_post.bias,
        "pooler.dense.weight": torch.zeros(s.width, s.width), "pooler.dense.bias": torch.zeros(s.width),
    }
    for i, blk in enumerate(visual.transformer.resblocks):
        sd.update(_block_state(blk, f"layers.{i}.", _VIT_BLOCK))
    with init_empty_weights():  # parameters on meta (no slow random init), buffers real
        model = ViTModel(config)
    return _load(model, sd)


def _to_clip(visual: nn.Module, s: VisualSpec) -> nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    config = CLIPVisionConfig(
        hidden_size=s.width, num_hidden_layers=s.layers, num_attention_heads=s.heads,
        intermediate_size=s.intermediate, hidden_act=s.act, layer_norm_eps=s.eps, image_size=s.image_size,
        patch_size=s.patch_size, num_channels=3, projection_dim=visual.output_dim, attention_dropout=0.0,
    )
    sd = {
        "embeddings.class_embedding": visual.class_embedding,
        "embeddings.patch_embedding.weight": visual.conv1.weight,
        "embeddings.position_embedding.weight": visual.positional_embedding,
        "pre_layrnorm.weight": visual.ln_pre.weight, "pre_layrnorm.bias": visual.ln_pre.bias,
        "post_layernorm.weight": visual.ln_post.weight, "post_layernorm.bias": visual.ln_post.bias,
    }
    for i, blk in enumerate(visual.transformer.resblocks):
        sd.update(_block_state(blk, f"encoder.layers.{i}.", _CLIP_BLOCK))
    with init_empty_weights():
        model = CLIPVisionModel(config)
    return _load(model, sd)


def _load(model: nn.Module, sd: dict[str, torch.Tensor]) -> nn.Module:
    """Strict load (every HF tensor must be mapped, shapes must agree) into a meta-initialised model."""
    sd = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sd.items()}
    model.load_state_dict(sd, strict=True, assign=True)
    return model.float().eval()


def convert_visual(visual: nn.Module) -> nn.Module:
    """An open_clip ViT -> the stock HF vision model that reproduces its per-token features exactly."""
    spec = describe_visual(visual)
    return _to_clip(visual, spec) if spec.ln_pre else _to_vit(visual, spec)
