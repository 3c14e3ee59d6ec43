"""The CLIPS captioner: predicts the full synthetic caption from the image and the web caption.

    cap = Captioner(vision_width=64, vocab_size=49408, width=64, layers=2, heads=4,
                    num_queries=48, prefix_len=32)
    logits = cap(image_tokens, web_ids, web_valid, target_valid)   # (N_valid, vocab)

One transformer (open_clip's own `Transformer` stack) runs over the sequence
[image tokens ; web-caption token embeddings ; L learnable queries] with the mask of
`captioner_attn_mask`: the prefix (image + web caption) attends only to itself, the queries
attend to the whole prefix and causally among themselves, and query i predicts token i of the
full synthetic caption (output head tied to the token embedding). Web-caption padding is
masked out as a key. It is a training-only head:
exports hold only the open_clip CLIP model.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import LayerNorm, Transformer
from torch import nn


def captioner_attn_mask(n_prefix: int, n_query: int) -> torch.Tensor:
    """(S, S) bool mask, True = may NOT attend; S = n_prefix + n_query, rows are queries of attention.

    prefix rows: see prefix columns only; query row i: sees every prefix column and queries 0..i.
    """
    s = n_prefix + n_query
    blocked = torch.zeros(s, s, dtype=torch.bool)
    blocked[:n_prefix, n_prefix:] = True  # the prefix is blind to the queries
    blocked[n_prefix:, n_prefix:] = torch.ones(n_query, n_query, dtype=torch.bool).triu(1)  # causal queries
    return blocked


class Captioner(nn.Module):
    def __init__(
        self,
        vision_width: int,
        vocab_size: int,
        width: int,
        layers: int,
        heads: int,
        num_queries: int,
        prefix_len: int,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        self.heads = heads
        self.num_queries = num_queries
        self.prefix_len = prefix_len
        self.image_proj = nn.Sequential(LayerNorm(vision_width), nn.Linear(vision_width, width))
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.text_pos = nn.Parameter(torch.randn(prefix_len, width) * 0.01)
        self.queries = nn.Parameter(torch.randn(num_queries, width) * 0.02)  # also the query positions
        self.transformer = Transformer(width=width, layers=layers, heads=heads, mlp_ratio=mlp_ratio)
        self.ln_final = LayerNorm(width)
        nn.init.normal_(self.token_embedding.weight, std=0.02)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable

    def build_mask(self, n_image: int, web_valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Additive (B*heads, S, S) mask: the structural mask plus web-caption padding as blocked keys."""
        b, t = web_valid.shape
        n_prefix = n_image + t
        blocked = captioner_attn_mask(n_prefix, self.num_queries).to(web_valid.device)
        blocked = blocked.unsqueeze(0).expand(b, -1, -1).clone()  # (B, S, S)
        pad_keys = ~web_valid  # (B, T)
        blocked[:, :, n_image:n_prefix] |= pad_keys.unsqueeze(1)
        # a padding row attends to the image at least, so no row is fully blocked (no NaN)
        mask = torch.zeros(blocked.shape, dtype=dtype, device=web_valid.device)
        mask.masked_fill_(blocked, float("-inf"))
        return mask.repeat_interleave(self.heads, dim=0)  # (B*H, S, S)

    def forward(
        self,
        image_tokens: torch.Tensor,  # (B, N, Cv) patch tokens of the vision tower
        web_ids: torch.Tensor,  # (B, T) web-caption ids, T <= prefix_len
        web_valid: torch.Tensor,  # (B, T) bool, False on padding
        target_valid: torch.Tensor | None = None,  # (B, L) bool: only these query positions get logits
    ) -> torch.Tensor:
        b, n, _ = image_tokens.shape
        t = web_ids.shape[1]
        if t > self.prefix_len:
            raise ValueError(f"web caption has {t} tokens; the captioner's prefix_len is {self.prefix_len}")
        img = self.image_proj(image_tokens)  # (B, N, C)
        txt = self.token_embedding(web_ids) + self.text_pos[:t]  # (B, T, C)
        qry = self.queries.unsqueeze(0).expand(b, -1, -1).to(img.dtype)  # (B, L, C)
        x = torch.cat([img, txt.to(img.dtype), qry], dim=1)  # (B, N+T+L, C)
        x = self.transformer(x, attn_mask=self.build_mask(n, web_valid, x.dtype))
        q = self.ln_final(x[:, n + t :])  # (B, L, C)
        if target_valid is not None:
            q = q[target_valid]  # (N_valid, C): no vocab-sized logits for padding positions
        # the output head is the (tied) token embedding: one vocab-sized matrix instead of two
        return F.linear(q, self.token_embedding.weight)  # (N_valid, V)
