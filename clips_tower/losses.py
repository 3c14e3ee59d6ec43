"""CLIPS losses: a softmax CLIP loss per contrastive view over the global batch, plus captioning.

    loss_fn = ClipsLoss(rank=0, world_size=1, contrastive_weight=1.0, caption_weight=2.0)
    terms = loss_fn(model_out, caption_targets)      # {"loss", "contrastive", "web", "syn", "caption"}

The contrastive term is open_clip's `ClipLoss` with `gather_with_grad=True`: every rank computes
the loss of the whole global batch from all-gathered features, gradients flow back through the
gather, and DDP's gradient averaging then yields exactly the single-process gradient. The
caption term is a token mean over the global batch's non-padding target tokens (see
`caption_loss`). Views are averaged. The mean of the ranks' losses equals the 1-process loss.
"""
from __future__ import annotations

import torch
import torch.distributed
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from torch import nn


class ClipsLoss(nn.Module):
    def __init__(self, rank: int = 0, world_size: int = 1, contrastive_weight: float = 1.0, caption_weight: float = 2.0):
        super().__init__()
        self.clip_loss = ClipLoss(gather_with_grad=True, cache_labels=True, rank=rank, world_size=world_size)
        self.world_size = world_size
        self.contrastive_weight = contrastive_weight
        self.caption_weight = caption_weight

    def caption_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Token-mean cross-entropy over the *global* batch, scaled so DDP's rank average is exact.

        Each rank returns world_size * (its token sum) / (global token count); the mean over ranks
        is then the global token mean, whatever the ranks' token counts are.
        """
        total = F.cross_entropy(logits.float(), targets, reduction="sum")
        count = torch.tensor(float(targets.numel()), device=logits.device)
        if self.world_size > 1:
            torch.distributed.all_reduce(count)
        return total * self.world_size / count.clamp(min=1.0)

    def forward(self, out: dict[str, torch.Tensor], caption_targets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        views = []
        for name in ("web", "syn"):
            if f"{name}_features" in out:
                terms[name] = self.clip_loss(out["image_features"], out[f"{name}_features"], out["logit_scale"])
                views.append(terms[name])
        loss = out["image_features"].new_zeros(())
        if views:
            terms["contrastive"] = torch.stack(views).mean()
            loss = loss + self.contrastive_weight * terms["contrastive"]
        if "caption_logits" in out:
            if caption_targets is None:
                raise ValueError("caption logits without caption targets")
            # logits are already restricted to the valid target positions: (N_valid, V) vs (N_valid,)
            terms["caption"] = self.caption_loss(out["caption_logits"], caption_targets)
            loss = loss + self.caption_weight * terms["caption"]
        terms["loss"] = loss
        return terms
