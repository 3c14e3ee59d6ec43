"""LLaVA-1.5's `group_by_modality_length`: batches of one modality and similar length.

    from llava_train.sampler import ModalityLengthSampler
    sampler = ModalityLengthSampler(dataset.modality_lengths, batch_size=16, world_size=8, seed=0)

`lengths` follow LLaVA-1.5's sign convention (+ with an image, - text-only). Each modality is
shuffled and cut into megabatches of `world_size * batch_size`; a megabatch is sorted by length
and split into per-rank batches, so the batches that run together (one per rank, as accelerate
dispatches consecutive batches to ranks) hold samples of similar length and of one modality.
Megabatches are then shuffled, the leftover ones last. Deterministic in (seed, epoch), which is
what lets `--resume_from_checkpoint` skip exactly the batches already seen.
"""
from __future__ import annotations

import torch


def modality_length_grouped_indices(lengths: list[int], batch_size: int, world_size: int,
                                    generator: torch.Generator) -> list[int]:
    mega = batch_size * world_size
    megabatches, leftovers = [], []
    for sign in (1, -1):
        idx = [i for i, n in enumerate(lengths) if (n > 0) == (sign > 0)]
        perm = [idx[j] for j in torch.randperm(len(idx), generator=generator).tolist()]
        for k in range(0, len(perm), mega):
            chunk = sorted(perm[k:k + mega], key=lambda i: -abs(lengths[i]))
            (megabatches if len(chunk) == mega else leftovers).append(chunk)
    order = [megabatches[j] for j in torch.randperm(len(megabatches), generator=generator).tolist()]
    # Leftovers of both modalities form the tail, still length-sorted.
    tail = sorted((i for chunk in leftovers for i in chunk), key=lambda i: -abs(lengths[i]))
    return [i for chunk in order for i in chunk] + tail


class ModalityLengthSampler(torch.utils.data.Sampler):
    def __init__(self, lengths: list[int], batch_size: int, world_size: int = 1, seed: int = 0):
        self.lengths, self.batch_size, self.world_size, self.seed = lengths, batch_size, world_size, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_length_grouped_indices(self.lengths, self.batch_size, self.world_size, g))
