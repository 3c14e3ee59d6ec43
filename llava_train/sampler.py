"""LLaVA-1.5's `group_by_modality_length`: batches of one modality and similar length.

    from llava_train.sampler import ModalityLengthSampler
    sampler = ModalityLengthSampler(dataset.modality_lengths, batch_size=16, world_size=8, seed=0)

`lengths` follow LLaVA-1.5's sign convention (+ with an image, - text-only). Each modality is
shuffled and cut into megabatches of `world_size * batch_size`; a megabatch is sorted by length
and split into per-rank batches, so the batches that run together (one per rank, as accelerate
dispatches consecutive batches to ranks) hold samples of similar length and of one modality.
Megabatches are then shuffled, the leftover ones last. Deterministic in (seed, epoch), which is
what lets `--resume_from_checkpoint` skip exactly the batches already seen.

With one process a megabatch is one batch, so LLaVA-1.5's grouping only sorts inside a batch;
`mult` > 1 (the `length_group_mult` field) sorts `mult` steps' worth of samples together before
cutting them into steps, which removes most padding (the steps are still shuffled).
"""
from __future__ import annotations

import torch


def modality_length_grouped_indices(lengths: list[int], batch_size: int, world_size: int,
                                    generator: torch.Generator, mult: int = 1) -> list[int]:
    step = batch_size * world_size
    megabatches, leftovers = [], []
    for sign in (1, -1):
        idx = [i for i, n in enumerate(lengths) if (n > 0) == (sign > 0)]
        perm = [idx[j] for j in torch.randperm(len(idx), generator=generator).tolist()]
        for k in range(0, len(perm), step * mult):
            # mult > 1 sorts `mult` steps' worth of samples together, then cuts them into steps: the
            # samples of a step are closer in length (less padding); the steps are shuffled below.
            chunk = sorted(perm[k:k + step * mult], key=lambda i: -abs(lengths[i]))
            for j in range(0, len(chunk), step):
                (megabatches if len(chunk[j:j + step]) == step else leftovers).append(chunk[j:j + step])
    order = [megabatches[j] for j in torch.randperm(len(megabatches), generator=generator).tolist()]
    # Leftovers of both modalities form the tail, still length-sorted.
    tail = sorted((i for chunk in leftovers for i in chunk), key=lambda i: -abs(lengths[i]))
    return [i for chunk in order for i in chunk] + tail


class ModalityLengthSampler(torch.utils.data.Sampler):
    def __init__(self, lengths: list[int], batch_size: int, world_size: int = 1, seed: int = 0, mult: int = 1):
        self.lengths, self.batch_size, self.world_size, self.seed = lengths, batch_size, world_size, seed
        self.mult = mult
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_length_grouped_indices(self.lengths, self.batch_size, self.world_size, g, self.mult))
