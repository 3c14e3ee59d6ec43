"""HF Trainer for LLaVA stages: per-part lrs, modality-length grouping, fast loss paths, complete saves.

    trainer = LlavaTrainer(model=model, args=args, train_dataset=ds, data_collator=collator,
                           processing_class=processor, modality_lengths=ds.modality_lengths)
    trainer.train(); trainer.save_final(args.output_dir)

`args` is a `llava_train.train.LlavaTrainingArguments`: the trainer reads its LLaVA fields
(`mm_projector_lr`, `vision_tower_lr`, `label_logits_only`, `group_by_modality_length`,
`length_group_mult`) from `self.args`, as HF Trainer reads its own.

Everything else (DeepSpeed ZeRO-2/3, DDP, exact resume) is stock HF Trainer; checkpoints appear only
complete and the final save is published valid-or-absent (llava_train.checkpoints). The final
save is a stock HF directory: under ZeRO-3 the Trainer gathers the full 16-bit state dict
(`stage3_gather_16bit_weights_on_model_save`), which is the only place weights are gathered.
"""
from __future__ import annotations

import logging

import torch
from transformers import Trainer, TrainerCallback

from clips_tower.distributed import base_llava
from llava_train.checkpoints import AtomicCheckpoints
from llava_train.data import IGNORE_INDEX
from llava_train.sampler import ModalityLengthSampler
from llava_train.stages import param_groups

log = logging.getLogger(__name__)
ARGS_FIELDS = ("mm_projector_lr", "vision_tower_lr", "label_logits_only", "group_by_modality_length",
               "length_group_mult")  # read from self.args (llava_train.train.LlavaTrainingArguments)


def base_dtype(model) -> torch.dtype:
    return next(base_llava(model).model.multi_modal_projector.parameters()).dtype


class InterruptCallback(TrainerCallback):
    """Stop (after the step's checkpoint) at `step`, as if the job were killed there; for resume tests."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_save = True
            control.should_training_stop = True
        return control


class LlavaTrainer(AtomicCheckpoints, Trainer):
    """Stock Trainer + per-part lrs, length grouping, cached tower features, logits only where learned.

    `feature_cache` (llava_train.feature_cache): batches carry `image_rows` instead of pixels; their
    projected features reach Llava through its `mm_encoder_outputs` argument. `label_logits_only`:
    the LM head and cross-entropy run only at positions whose next token is a target (Llava's
    `logits_to_keep` with a boolean mask); the loss is the same token mean as the stock one.
    """

    def __init__(self, *args, modality_lengths: list[int] | None = None, feature_cache=None, bad_samples=None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        missing = [f for f in ARGS_FIELDS if not hasattr(self.args, f)]
        if missing:
            raise TypeError(f"LlavaTrainer needs llava_train.train.LlavaTrainingArguments; args has no {missing}")
        self.bad_samples = bad_samples  # llava_train.skips.BadSampleTracker (also one of the callbacks)
        if bad_samples is not None and bad_samples not in self.callback_handler.callbacks:
            self.add_callback(bad_samples)
        self.modality_lengths, self.feature_cache = modality_lengths, feature_cache

    def floating_point_ops(self, inputs) -> int:
        """The stock estimate (6 x tokens x non-embedding params) with the parameter count taken once,
        not walked over every module at every step."""
        if getattr(self, "_num_params", None) is None:
            self._num_params = self.model.num_parameters(exclude_embeddings=True) if hasattr(
                self.model, "num_parameters") else 0
        return 6 * inputs["input_ids"].numel() * self._num_params if "input_ids" in inputs else 0

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if "image_row" not in self._signature_columns:  # not forward arguments: keep them for compute_loss
            self._signature_columns += ["image_row", "image_rows", "bad_samples"]

    def training_step(self, model, inputs, *args, **kwargs):
        """The stock step; first the batch's bad-sample report goes to the tracker (which may stop the run)."""
        inputs = dict(inputs)
        info = inputs.pop("bad_samples", None)
        if self.bad_samples is not None:
            self.bad_samples.update(info, self.accelerator)
        return super().training_step(model, inputs, *args, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        inputs.pop("bad_samples", None)  # reported in training_step; not a forward argument
        if "position_ids" in inputs and "attention_mask" not in inputs:
            inputs["use_cache"] = False  # a cache would hide the packed rows from the mask builder
        if "image_rows" in inputs:
            if self.feature_cache is None:
                raise ValueError("batch carries image_rows but the trainer has no feature_cache")
            dtype = base_dtype(model)
            inputs["mm_encoder_outputs"] = self.feature_cache.projected(model, inputs.pop("image_rows"), dtype)
        if not self.args.label_logits_only or "labels" not in inputs or self.label_smoother is not None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        targets = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # (B, T): next token
        keep = targets != IGNORE_INDEX
        outputs = model(**inputs, logits_to_keep=keep)  # logits (K, V) at the kept positions only
        loss = torch.nn.functional.cross_entropy(outputs.logits.float(), targets[keep], reduction="sum")
        if num_items_in_batch is not None:
            loss = loss / num_items_in_batch  # same token mean (and GA scaling) as the stock loss
            if self.args.average_tokens_across_devices and self.model_accepts_loss_kwargs:
                loss = loss * self.accelerator.num_processes
        else:
            loss = loss / keep.sum().clamp(min=1)
        return (loss, outputs) if return_outputs else loss

    def _get_train_sampler(self, train_dataset=None):
        if self.args.group_by_modality_length and self.modality_lengths is not None:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return ModalityLengthSampler(self.modality_lengths, self.args.per_device_train_batch_size
                                         * self.args.gradient_accumulation_steps, self.args.world_size,
                                         seed=seed, mult=self.args.length_group_mult)
        return super()._get_train_sampler(train_dataset)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            kwargs.pop("lr", None)  # each group carries its own
            groups = param_groups(opt_model, self.args.learning_rate, self.args.mm_projector_lr,
                                  self.args.vision_tower_lr, self.args.weight_decay)
            for g in groups:
                log.info("optimizer group: %d tensors, lr %g, wd %g", len(g["params"]), g["lr"], g["weight_decay"])
            self.optimizer = cls(groups, lr=self.args.learning_rate, **kwargs)
        return self.optimizer
