"""Sequence packing for LLaVA training: several samples per row, no attention across samples.

    from llava_train.packing import PackingCollator
    collator = PackingCollator(pad_token_id, image_token_id, num_image_tokens, (3, 336, 336), max_length=1024)
    batch = collator([dataset[i] for i in range(8)])  # input_ids/labels/position_ids (R, T), R <= 8

The batch holds the same samples as `LlavaCollator`'s (the optimizer sees the same batch); they are
placed first-fit, longest first, into rows of at most `max_length` tokens (never below the batch's
longest sample; None = the longest sample, so no row is longer than the padded batch would be).
There is no `attention_mask`: transformers' mask builder sees `position_ids` restart at 0 in a row
and makes the causal mask block-diagonal (`masking_utils.find_packed_sequence_indices`, sdpa and
eager alike; flash-attention reads the same position_ids), so a packed sample's logits equal its
unpacked ones. Labels stay the per-token mean over the whole batch: the first token of every
sample is labelled IGNORE_INDEX (in an unpacked row it is never a target either, the causal-LM
loss shifts it away), so the previous sample's last position never learns to predict it. Images
are listed in row-major order of their `<image>` tokens, which is the order Llava scatters them
in. Padding at the end of a row is a segment of its own (positions restart), with ignored labels.
"""
from __future__ import annotations

import torch

from llava_train.data import IGNORE_INDEX, batch_bad_samples, put_images, zero_image, zero_image_tokens


def pack_rows(lengths: list[int], max_length: int) -> list[list[int]]:
    """First-fit decreasing: sample indices per row, each row's total length <= max_length."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max_length - lengths[i])
    return rows


class PackingCollator:
    """Packs a batch of dataset items (input_ids, labels, pixel_values or image_row) into rows."""

    def __init__(self, pad_token_id: int, image_token_id: int, num_image_tokens: int,
                 image_shape: tuple[int, int, int] | None = None, max_length: int | None = None,
                 pad_to_multiple_of: int | None = None, cached_features: bool = False):
        self.pad_token_id, self.image_token_id = pad_token_id, image_token_id
        self.num_image_tokens, self.image_shape = num_image_tokens, image_shape
        self.max_length, self.pad_to_multiple_of = max_length, pad_to_multiple_of
        self.cached_features = cached_features  # items carry `image_row` (feature cache) instead of pixels

    def __call__(self, batch: list[dict]) -> dict:
        lengths = [len(b["input_ids"]) for b in batch]
        rows = pack_rows(lengths, max(self.max_length or 0, max(lengths)))
        has_image = any("pixel_values" in b or "image_row" in b for b in batch)
        dummy = zero_image_tokens(has_image, self.num_image_tokens, self.image_shape)
        width = max(sum(lengths[i] for i in row) for row in rows)
        width = max(width, sum(lengths[i] for i in rows[-1]) + dummy)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)  # (R, T)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        position_ids = torch.zeros((len(rows), width), dtype=torch.long)
        pixels, image_rows = [], []
        for r, row in enumerate(rows):
            t = 0
            for i in row:
                b, n = batch[i], lengths[i]
                input_ids[r, t:t + n] = b["input_ids"]
                labels[r, t:t + n] = b["labels"]
                labels[r, t] = IGNORE_INDEX  # never a target: keeps the previous sample from predicting it
                position_ids[r, t:t + n] = torch.arange(n)
                if "pixel_values" in b:
                    pixels.append(b["pixel_values"])
                if "image_row" in b:
                    image_rows.append(b["image_row"])
                t += n
            if r == len(rows) - 1 and dummy:  # a zero image in its own segment: every rank runs the tower
                input_ids[r, t:t + dummy] = self.image_token_id
                position_ids[r, t:t + dummy] = torch.arange(dummy)
                t += dummy
            position_ids[r, t:] = torch.arange(width - t)  # trailing padding: a segment of its own
        out = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}
        if dummy:
            image_rows, pixels = zero_image(self.image_shape, self.cached_features)
        put_images(out, pixels, image_rows)  # row-major token order
        out["bad_samples"] = batch_bad_samples(batch)
        return out
