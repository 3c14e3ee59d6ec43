"""HF Trainer for LLaVA stages: per-part learning rates, modality-length grouping, complete saves.

    trainer = LlavaTrainer(model=model, args=args, train_dataset=ds, data_collator=collator,
                           processing_class=processor, modality_lengths=ds.modality_lengths)
    trainer.train(); trainer.save_final(args.output_dir)

Everything else (DeepSpeed ZeRO-2/3, DDP, checkpoints, exact resume) is stock HF Trainer. The
final save is a stock HF directory: under ZeRO-3 the Trainer gathers the full 16-bit state dict
(`stage3_gather_16bit_weights_on_model_save`), which is the only place weights are gathered.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from transformers import Trainer, TrainerCallback

from llava_train.sampler import ModalityLengthSampler
from llava_train.stages import param_groups

log = logging.getLogger(__name__)


class InterruptCallback(TrainerCallback):
    """Stop (after the step's checkpoint) at `step`, as if the job were killed there; for resume tests."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_save = True
            control.should_training_stop = True
        return control


class LlavaTrainer(Trainer):
    def __init__(self, *args, modality_lengths: list[int] | None = None, mm_projector_lr: float | None = None,
                 vision_tower_lr: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.modality_lengths = modality_lengths
        self.mm_projector_lr, self.vision_tower_lr = mm_projector_lr, vision_tower_lr

    def _get_train_sampler(self, train_dataset=None):
        if getattr(self.args, "group_by_modality_length", False) and self.modality_lengths is not None:
            return ModalityLengthSampler(self.modality_lengths, self.args.per_device_train_batch_size
                                         * self.args.gradient_accumulation_steps, self.args.world_size,
                                         seed=self.args.data_seed if self.args.data_seed is not None else self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            kwargs.pop("lr", None)  # each group carries its own
            groups = param_groups(opt_model, self.args.learning_rate, self.mm_projector_lr,
                                  self.vision_tower_lr, self.args.weight_decay)
            for g in groups:
                log.info("optimizer group: %d tensors, lr %g, wd %g", len(g["params"]), g["lr"], g["weight_decay"])
            self.optimizer = cls(groups, lr=self.args.learning_rate, **kwargs)
        return self.optimizer

    def save_final(self, output_dir: str | Path) -> Path:
        """save_model into a temp dir, then move each file into `output_dir` (config.json last)."""
        output_dir = Path(output_dir)
        tmp = output_dir / ".final.tmp"
        self.save_model(str(tmp))
        if self.args.should_save:
            names = sorted(p.name for p in tmp.iterdir())
            for name in sorted(names, key=lambda n: n == "config.json"):
                target = output_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(tmp / name, target)
            shutil.rmtree(tmp, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        return output_dir
