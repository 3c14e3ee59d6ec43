"""One LLaVA training run from parsed arguments: init model, apply the stage, data, train, save.

    from llava_train.train import parse_args
    from llava_train.run import run
    run(*parse_args(["--config", "configs/llava/stage1_tiny.yaml", ...]))

`run` = `build_trainer` (init model, stage, data, feature cache, collator, trainer) + `.train()` +
`finish` (final save, report); scripts/bench_llava_train.py times `build_trainer`'s trainer.
Called by `llava_train.train.main` (launchers) and `clips-llava llava train`. Writes to
`output_dir`: `init/` (the assembled stock Llava the run starts from), `checkpoint-N/` (HF
Trainer, for `--resume_from_checkpoint`), the final stock Llava (or a peft adapter for LoRA),
`mm_projector.safetensors`, and `run_report.json` (losses, bad-sample counts, trainable parts).
Checkpoints and the final model survive `kill -9` at any moment (llava_train.checkpoints).
"""
from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from clips_tower.distributed import check_save_on_each_node, local_mains_write, whole_weights, writes_as_told
from clips_tower.inputs import is_llava_dir
from clips_tower.io import atomic_write
from llava_train.data import LlavaCollator, LlavaDataset
from llava_train.model import bnb_config, image_seq_length, tower_image_shape
from llava_train.skips import BadSampleTracker
from llava_train.stages import apply_stage, get_stage

log = logging.getLogger("llava_train.run")


def prepare_init(margs, dargs, targs) -> Path:
    """The stock Llava dir this run loads: given, or assembled (rank 0) into OUTPUT_DIR/init.

    HF's multi-node convention: on shared storage global rank 0 assembles it while every other rank
    (all nodes) waits; with `save_on_each_node` (node-local disks) each node's local main assembles its own."""
    if is_llava_dir(margs.model_name_or_path) and not margs.pretrain_mm_mlp_adapter:
        return Path(margs.model_name_or_path)
    init = Path(targs.output_dir) / "init"
    per_node = targs.save_on_each_node
    builder = targs.local_process_index == 0 if per_node else targs.process_index == 0
    with targs.main_process_first(local=per_node, desc="assemble the initial Llava"), whole_weights(targs), \
            local_mains_write(per_node and builder):
        fingerprint = _inputs_fingerprint(margs, dargs, targs)
        stamp = init / "assembled_from.json"
        if builder and (init / "config.json").is_file() and _read_stamp(stamp) != fingerprint:
            log.warning("%s was assembled from other inputs; assembling it again", init)
            shutil.rmtree(init)
        if builder and not (init / "config.json").is_file():
            if is_llava_dir(margs.model_name_or_path):  # a Llava dir + a projector to load into it
                from transformers import AutoProcessor, LlavaForConditionalGeneration

                from llava_train.model import save_llava
                from llava_train.projector import load_projector

                model = LlavaForConditionalGeneration.from_pretrained(margs.model_name_or_path)
                load_projector(model, margs.pretrain_mm_mlp_adapter)
                save_llava(model, AutoProcessor.from_pretrained(margs.model_name_or_path), init)
            else:
                if not margs.vision_tower:
                    raise ValueError("--vision_tower is required when model_name_or_path is a language model")
                from llava_train.model import assemble_llava

                assemble_llava(margs.vision_tower, margs.model_name_or_path, init, template=dargs.template,
                               projector=margs.mm_projector_type, seed=targs.seed,
                               projector_weights=margs.pretrain_mm_mlp_adapter,
                               image_aspect_ratio=dargs.image_aspect_ratio)
            # a kill mid-write leaves no stamp (init is re-assembled), never a torn one
            atomic_write(stamp, json.dumps(fingerprint, indent=1))
    return init


def _read_stamp(stamp: Path):
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return None  # missing or unreadable: init is assembled again


def _inputs_fingerprint(margs, dargs, targs) -> dict:
    """What OUTPUT_DIR/init was assembled from (files by size + mtime), so a re-run with a retrained
    tower, LM or projector in the same output dir never silently reuses a stale initial model."""
    def files(path):
        if not path or not Path(path).exists():
            return path  # a hub name, or nothing
        root = Path(path)
        entries = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        return [[str(p.relative_to(root) if p != root else p.name), p.stat().st_size, p.stat().st_mtime_ns]
                for p in entries]
    return {"model": files(margs.model_name_or_path), "tower": files(margs.vision_tower),
            "projector": files(margs.pretrain_mm_mlp_adapter), "template": dargs.template,
            "projector_type": margs.mm_projector_type, "seed": targs.seed,
            "image_aspect_ratio": dargs.image_aspect_ratio}


def load_model(init: Path, margs, targs, spec):
    from transformers import LlavaForConditionalGeneration

    dtype = torch.bfloat16 if targs.bf16 else torch.float16 if targs.fp16 else torch.float32
    kwargs = {"dtype": dtype, "attn_implementation": margs.attn_implementation}
    if spec.bits == 4:
        kwargs["quantization_config"] = bnb_config(4, dtype)
    model = LlavaForConditionalGeneration.from_pretrained(init, **kwargs)
    model.config.use_cache = False
    if spec.lora:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        if spec.bits:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=targs.gradient_checkpointing)
        model = get_peft_model(model, LoraConfig(
            r=margs.lora_r, lora_alpha=margs.lora_alpha, lora_dropout=margs.lora_dropout,
            target_modules=margs.lora_target_modules, modules_to_save=["multi_modal_projector"],
            task_type="CAUSAL_LM"))
    if targs.gradient_checkpointing and not spec.llm:
        model.enable_input_require_grads()  # frozen embeddings would otherwise cut the graph
    return model


@dataclass
class Built:
    """What `build_trainer` assembled for one run; `finish` reports from it."""
    trainer: object  # LlavaTrainer (or the `trainer_cls` given)
    init: Path  # the stock Llava dir the run started from
    dataset: LlavaDataset
    tracker: BadSampleTracker
    trainable: str  # apply_stage's table
    cache: object = None  # llava_train.feature_cache.FeatureCache, when targs.feature_cache
    cache_seconds: float = 0.0  # its build (or load) time


def run(margs, dargs, targs) -> int:
    """Build, train (resuming as `--resume_from_checkpoint` says), save and report: the whole run."""
    from llava_train.checkpoints import resolve_resume

    built = build_trainer(margs, dargs, targs)
    # true/last: the newest *complete* checkpoint (incomplete ones are skipped with a warning), or step 0
    resume = resolve_resume(targs.resume_from_checkpoint, targs.output_dir, verbose=targs.should_log)
    built.trainer.train(resume_from_checkpoint=resume)
    return finish(built, margs, dargs, targs)


def build_trainer(margs, dargs, targs, trainer_cls=None) -> Built:
    """The run's trainer, ready for `.train()`: initial Llava, processor, dataset, model with the stage
    applied, feature cache, collator. `trainer_cls`: a LlavaTrainer subclass (the benchmark's)."""
    from llava_train.trainer import InterruptCallback, LlavaTrainer

    spec = get_stage(margs.stage, margs.train_tower)
    check_save_on_each_node(targs)
    if spec.tower and targs.ddp_find_unused_parameters is None:
        targs.ddp_find_unused_parameters = True  # layer -2 leaves the tower's last block unused
    init = prepare_init(margs, dargs, targs)
    processor = load_processor(init, dargs)
    dataset = build_dataset(dargs, targs, processor, image_seq_length(init))
    tracker = BadSampleTracker(dargs.max_bad_sample_fraction, dargs.bad_sample_min_seen, dataset.startup_skips)
    model = load_model(init, margs, targs, spec)
    if targs.save_on_each_node:  # each node's local main saves checkpoints and the final model (see prepare_init)
        model.should_save_on_this_rank = writes_as_told
    trainable = apply_stage(model, spec)
    t0 = time.perf_counter()
    cache = _feature_cache(model, dataset, targs, spec)
    cache_seconds = time.perf_counter() - t0 if cache is not None else 0.0
    vcfg = (model.get_base_model() if spec.lora else model).config.vision_config
    collator = _collator(processor, dataset, targs, tower_image_shape(vcfg), cached=cache is not None)
    trainer = (trainer_cls or LlavaTrainer)(
        model=model, args=targs, train_dataset=dataset, data_collator=collator, processing_class=processor,
        modality_lengths=dataset.modality_lengths, feature_cache=cache, bad_samples=tracker,
        callbacks=[InterruptCallback(targs.interrupt_after_steps)] if targs.interrupt_after_steps else None)
    return Built(trainer, init, dataset, tracker, trainable, cache, cache_seconds)


def _feature_cache(model, dataset, targs, spec):
    """The frozen tower's features (llava_train.feature_cache) when `targs.feature_cache`, else None."""
    if not targs.feature_cache:
        return None
    if spec.tower:
        raise ValueError("feature_cache needs a frozen tower; turn off train_tower or feature_cache")
    from llava_train.feature_cache import build_feature_cache

    # rank 0 (each node's local main with save_on_each_node) writes feature_cache_dir first
    with targs.main_process_first(local=targs.save_on_each_node, desc="tower feature cache"):
        return build_feature_cache(model, dataset, device=targs.device, cache_dir=targs.feature_cache_dir)


def _collator(processor, dataset, targs, image_shape, cached: bool):
    """Padding (LlavaCollator) or packing (llava_train.packing) collator, as `targs.packing` says."""
    ids = (processor.tokenizer.pad_token_id, processor.tokenizer.convert_tokens_to_ids("<image>"),
           dataset.num_image_tokens, image_shape)
    if targs.packing:
        from llava_train.packing import PackingCollator

        return PackingCollator(*ids, max_length=targs.packing_max_length, cached_features=cached)
    return LlavaCollator(*ids, cached_features=cached)


def finish(built: Built, margs, dargs, targs) -> int:
    """After `.train()`: the final save (unless interrupted) and run_report.json (saving process)."""
    trainer, tracker = built.trainer, built.tracker
    interrupted = targs.interrupt_after_steps and trainer.state.global_step < targs.max_steps
    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    tracker.gather_ids()
    if not interrupted:
        from llava_train.projector import export_from_model_dir

        # the projector export goes into the staged final dir: published with the model, never stale
        export = _export_lora_projector if get_stage(margs.stage, margs.train_tower).lora else export_from_model_dir
        trainer.save_final(targs.output_dir, before_publish=export)
    if targs.should_save:
        report = {"stage": margs.stage, "init": str(built.init), "losses": losses,
                  "global_step": trainer.state.global_step,
                  "speedups": {"packing": targs.packing, "feature_cache": built.cache is not None,
                               "label_logits_only": targs.label_logits_only},
                  "interrupted": bool(interrupted), "bad_samples": tracker.report(),
                  "records": len(built.dataset.index), "usable_records": len(built.dataset),
                  "trainable": built.trainable, "image_aspect_ratio": dargs.image_aspect_ratio}
        atomic_write(Path(targs.output_dir) / "run_report.json", json.dumps(report, indent=2))
        print(f"{tracker.startup.report()} at start-up; {tracker.training.report()} during training "
              f"(of {tracker.seen} drawn)")
    return 0


def load_processor(init: Path, dargs):
    """The run's processor: the init dir's, with the run's template and image_aspect_ratio (saved with the model)."""
    from transformers import AutoProcessor

    from llava_train.model import with_aspect_ratio
    from llava_train.templates import get_template

    processor = AutoProcessor.from_pretrained(init)
    processor.chat_template = get_template(dargs.template).jinja(processor.tokenizer)
    processor.image_processor = with_aspect_ratio(processor.image_processor, dargs.image_aspect_ratio)
    return processor


def build_dataset(dargs, targs, processor, image_seq_length: int, allow_empty: bool = False) -> LlavaDataset:
    """The lazy dataset over the data index, built once (per node with save_on_each_node, else globally);
    `image_seq_length`: the init model's (`llava_train.model.image_seq_length`)."""
    if dargs.check_images:
        log.warning("check_images is deprecated and ignored: bad images are replaced and counted when loaded; "
                    "run `clips-llava llava check-data` for an up-front pass")
    index_dir = dargs.data_index_dir or Path(targs.output_dir) / "data_index"
    with targs.main_process_first(local=targs.save_on_each_node, desc="data index"):
        return LlavaDataset(dargs.data_path, dargs.image_folder, processor, dargs.template, targs.model_max_length,
                            dargs.max_bad_sample_fraction, index_dir=index_dir, allow_empty=allow_empty,
                            image_seq_length=image_seq_length)


def _export_lora_projector(out: Path) -> None:
    """The projector trained under LoRA (peft `modules_to_save`) as mm_projector.safetensors."""
    from safetensors.torch import load_file

    from llava_train.projector import write_projector

    state = load_file(str(out / "adapter_model.safetensors"))
    key = "multi_modal_projector."
    proj = {k.split(key, 1)[1].replace("modules_to_save.default.", ""): v for k, v in state.items() if key in k}
    if proj:
        write_projector(proj, out / "mm_projector.safetensors")
