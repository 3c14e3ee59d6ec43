"""Bad samples found while training: counted by reason, summed over ranks, saved with checkpoints, capped.

    from llava_train.skips import SkipCounter, BadSampleTracker, TooManyBadSamples
    tracker = BadSampleTracker(max_fraction=0.01, min_seen=200, startup=dataset.startup_skips)
    trainer = LlavaTrainer(..., callbacks=[tracker])   # the trainer feeds it each batch's `bad_samples`

`LlavaDataset.__getitem__` replaces a sample that turns out bad (missing or undecodable image,
too long, nothing to learn) with another one and reports what it replaced in the item; the
collators sum that into the batch's `bad_samples` entry ({"n": items, "bad": [(reason, id)]}),
which reaches the main process whatever the number of DataLoader workers. The trainer pops it
before the forward and calls `tracker.update(...)`. Counts are all-reduced over ranks every step,
so every rank takes the same decision: once at least `min_seen` samples were seen and the bad
fraction so far exceeds `max_fraction`, every rank raises TooManyBadSamples naming the reasons.
The tracker is an `ExportableState` callback: its counts go into each checkpoint's
trainer_state.json and come back on `--resume_from_checkpoint`, so a resumed run reports (and
stops) exactly like an uninterrupted one.
"""
from __future__ import annotations

import logging
from collections import Counter

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from llava_train.samples import SKIP_REASONS

log = logging.getLogger(__name__)
REASONS = list(SKIP_REASONS)


class TooManyBadSamples(ValueError):
    pass


class SkipCounter:
    """Skipped samples by reason, with the first few offending ids."""

    def __init__(self, keep_ids: int = 5):
        self.counts: Counter = Counter()
        self.ids: dict[str, list] = {}
        self.keep_ids = keep_ids

    def add(self, reason: str, sample_id) -> None:
        self.counts[reason] += 1
        self.note_id(reason, sample_id)

    def note_id(self, reason: str, sample_id) -> None:
        """Keep `sample_id` (if any) among the first ids of `reason`; the count is not touched."""
        assert reason in SKIP_REASONS, reason
        if sample_id is not None:
            self._keep(reason, sample_id)

    def _keep(self, reason: str, sample_id) -> None:
        ids = self.ids.setdefault(reason, [])
        if len(ids) < self.keep_ids and sample_id not in ids:
            ids.append(sample_id)

    def merge(self, counts: dict, ids: dict) -> None:
        for reason, n in counts.items():
            self.counts[reason] += n
        for reason, first in ids.items():
            for sid in first:  # as recorded elsewhere, a missing id (None) included
                self._keep(reason, sid)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self) -> str:
        if not self.total:
            return "bad samples: none"
        parts = [f"{r}={n} (first ids: {self.ids.get(r, [])})" for r, n in sorted(self.counts.items())]
        return f"bad samples: {self.total} skipped: " + "; ".join(parts)

    def as_dict(self) -> dict:
        return {"total": self.total, "counts": dict(self.counts), "first_ids": self.ids}


class BadSampleTracker(TrainerCallback, ExportableState):
    """Global (all ranks) counts of the samples replaced during training; the bad-fraction stop."""

    def __init__(self, max_fraction: float = 0.01, min_seen: int = 200, startup: SkipCounter | None = None):
        self.max_fraction, self.min_seen = max_fraction, min_seen
        self.startup = startup or SkipCounter()  # structural problems found when the index was built
        self.training = SkipCounter()             # replaced while training (summed over ranks)
        self.seen = 0                             # samples drawn so far, bad ones included (all ranks)

    def update(self, info: dict | None, accelerator=None) -> None:
        """Add one batch's report ({"n": items, "bad": [(reason, id)]}); sum over ranks; maybe stop."""
        info = info or {"n": 0, "bad": []}
        local = [0] * (len(REASONS) + 1)
        local[-1] = int(info["n"]) + len(info["bad"])
        for reason, sid in info["bad"]:
            local[REASONS.index(reason)] += 1
            self.training.note_id(reason, sid)  # ids are rank-local; the counts come from the sum below
        total = torch.tensor(local, dtype=torch.long)
        if accelerator is not None and accelerator.num_processes > 1:
            total = accelerator.reduce(total.to(accelerator.device), reduction="sum").cpu()
        for reason, n in zip(REASONS, total[:-1].tolist()):
            if n:
                self.training.counts[reason] += n
        self.seen += int(total[-1])
        if info["bad"]:
            log.warning("replaced %d bad sample(s) in this batch: %s", len(info["bad"]),
                        ", ".join(f"{sid} ({reason})" for reason, sid in info["bad"][:5]))
        self.check()

    def check(self) -> None:
        bad = self.training.total
        if self.seen >= self.min_seen and bad > self.max_fraction * self.seen:
            raise TooManyBadSamples(
                f"{bad} of the {self.seen} samples seen so far were bad ({bad / self.seen:.1%}), more than "
                f"max_bad_sample_fraction={self.max_fraction}; {self.training.report()}; stopping "
                "(run `clips-llava llava check-data` with the same arguments to list every bad record)")

    def report(self) -> dict:
        both = SkipCounter()
        both.merge(self.startup.counts, self.startup.ids)
        both.merge(self.training.counts, self.training.ids)
        return {**both.as_dict(), "at_startup": self.startup.as_dict(), "during_training": self.training.as_dict(),
                "seen_during_training": self.seen}

    def gather_ids(self) -> None:
        """Merge every rank's first ids (collective; call on all ranks at the end of training)."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() \
                and torch.distributed.get_world_size() > 1:
            everyone = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(everyone, self.training.ids)
            for ids in everyone:
                self.training.merge({}, ids)

    # ExportableState: saved in every checkpoint's trainer_state.json
    def state(self) -> dict:
        return {"args": {"max_fraction": self.max_fraction, "min_seen": self.min_seen},
                "attributes": {"seen": self.seen, "counts": dict(self.training.counts), "ids": self.training.ids}}

    def on_train_begin(self, args, state, control, **kwargs):
        saved = (state.stateful_callbacks or {}).get(type(self).__name__)
        if isinstance(saved, dict) and "attributes" in saved:  # resumed: continue the saved counts
            attrs = saved["attributes"]
            self.seen = int(attrs.get("seen", 0))
            self.training = SkipCounter()
            self.training.merge(attrs.get("counts", {}), attrs.get("ids", {}))
        return control
