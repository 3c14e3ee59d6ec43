"""Benchmark LLaVA training throughput: our trainer vs stock HF Trainer + Llava with plain padding.

    .venv/bin/python scripts/bench_llava_train.py --steps 20                       # tiny world, CPU
    python scripts/bench_llava_train.py --real-widths --device cuda --steps 30     # ViT-L/14-336 + ~1B Llama, bf16

Both sides train the same assembled stock Llava on the same data, with the same batch size and
optimizer, for stage 1 (projector only, `plain`) and stage 2 (projector + LLM, `vicuna_v1`), in
one process, one after the other. The baseline is `transformers.Trainer` with a random sampler
and a collator that pads every batch to its longest sample; ours is `LlavaTrainer` with LLaVA-1.5
`group_by_modality_length`. Tokens/s counts every non-pad token, image tokens included. Prints
one line per (stage, side) and the ratio; `--json FILE` writes the numbers. At real widths it
also reports peak memory and MFU (6 x LM params + 2 x tower params per token/patch, vs
`--peak_tflops`, 989 for H100 bf16 dense). Not done yet: the stage-1 frozen-tower feature cache
and sequence packing (see the issue); only length grouping is measured here.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback


def _real_width_parts(tmp: Path, world: Path) -> tuple[Path, Path]:
    """A random ViT-L/14-336 tower (CLIPS shape) and a ~1B random Llama with the world's tokenizer."""
    from transformers import CLIPImageProcessor, LlamaConfig, LlamaForCausalLM, ViTConfig, ViTModel

    from llava_train.lm import train_tokenizer

    tower = tmp / "tower"
    ViTModel(ViTConfig(image_size=336, patch_size=14, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                       intermediate_size=4096, layer_norm_eps=1e-6), add_pooling_layer=False).save_pretrained(tower)
    CLIPImageProcessor(size={"height": 336, "width": 336}, do_center_crop=False, resample=2,
                       image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(tower)
    tok = train_tokenizer(world, 4096)
    lm = tmp / "lm"
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
                                 num_attention_heads=16, num_key_value_heads=16, max_position_embeddings=4096,
                                 bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)).save_pretrained(lm)
    tok.save_pretrained(lm)
    return tower, lm


def _tiny_parts(tmp: Path, world: Path) -> tuple[Path, Path]:
    from clips_tower.adapter import export_tower

    from llava_train.lm import init_lm

    repo = Path(__file__).resolve().parents[1]
    return export_tower(str(repo / "configs/clips/models/tiny.json"), tmp / "tower", random_init=True), \
        init_lm(world, tmp / "lm", preset="tiny")


class _Meter:
    """Counts non-pad tokens per step (callback-free: wraps the collator)."""

    def __init__(self, collator):
        self.collator, self.tokens = collator, 0

    def __call__(self, batch):
        out = self.collator(batch)
        self.tokens += int(out["attention_mask"].sum())
        return out


class _Timer(TrainerCallback):
    """Times the steps after `warmup` (first steps pay one-off kernel/allocator setup)."""

    def __init__(self, meter, warmup, device):
        self.meter, self.warmup, self.device = meter, warmup, device
        self.t0 = self.t1 = None
        self.tokens0 = 0

    def _sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self._sync()
            self.t0, self.tokens0 = time.perf_counter(), self.meter.tokens

    def on_train_end(self, args, state, control, **kwargs):
        self._sync()
        self.t1 = time.perf_counter()

    def seconds(self) -> float:
        return self.t1 - self.t0


def bench_one(init: Path, data: Path, images: Path, template: str, stage: str, ours: bool, args) -> dict:
    from transformers import AutoProcessor, LlavaForConditionalGeneration, Trainer, TrainingArguments

    from llava_train.data import LlavaCollator, LlavaDataset
    from llava_train.stages import apply_stage, get_stage
    from llava_train.trainer import LlavaTrainer

    processor = AutoProcessor.from_pretrained(init)
    ds = LlavaDataset(data, images, processor, template, args.max_len, max_bad_sample_fraction=1.0)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model = LlavaForConditionalGeneration.from_pretrained(init, dtype=dtype, attn_implementation="sdpa").to(args.device)
    apply_stage(model, get_stage(stage))
    vcfg = model.config.vision_config
    collator = _Meter(LlavaCollator(processor.tokenizer.pad_token_id, ds.image_token_id, ds.num_image_tokens,
                                    (3, vcfg.image_size, vcfg.image_size)))
    targs = TrainingArguments(
        output_dir=str(args.tmp / f"{stage}-{ours}"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=1e-3 if stage == "stage1" else 2e-5, lr_scheduler_type="cosine", weight_decay=0.0,
        logging_steps=1, save_strategy="no", report_to=[], seed=0, bf16=args.bf16, disable_tqdm=True,
        use_cpu=args.device == "cpu", dataloader_num_workers=args.workers, gradient_checkpointing=args.real_widths)
    if ours:
        targs.group_by_modality_length = True
        trainer = LlavaTrainer(model=model, args=targs, train_dataset=ds, data_collator=collator,
                               modality_lengths=ds.modality_lengths)
    else:
        trainer = Trainer(model=model, args=targs, train_dataset=ds, data_collator=collator)
    timer = _Timer(collator, args.warmup, args.device)
    trainer.add_callback(timer)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    dt = timer.seconds()
    collator.tokens -= timer.tokens0  # count only the timed steps
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    n_lm = sum(p.numel() for n, p in model.named_parameters() if "vision_tower" not in n)
    n_tower = sum(p.numel() for n, p in model.named_parameters() if "vision_tower" in n)
    flops = 6 * n_lm * collator.tokens + 2 * n_tower * collator.tokens  # upper-bound style estimate
    r = {"stage": stage, "side": "ours" if ours else "baseline", "tokens": collator.tokens, "seconds": dt,
         "tokens_per_s": collator.tokens / dt, "first_loss": losses[0], "last_loss": losses[-1],
         "mean_loss": sum(losses) / len(losses)}
    if args.device == "cuda":
        r["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        r["mfu"] = flops / dt / (args.peak_tflops * 1e12)
    del trainer, model
    return r


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="example: .venv/bin/python scripts/bench_llava_train.py --steps 20")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--max_len", type=int, default=2048)
    p.add_argument("--preset", default="tiny", help="world preset")
    p.add_argument("--real-widths", dest="real_widths", action="store_true")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--peak_tflops", type=float, default=989.0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--json")
    args = p.parse_args(argv)
    args.bf16 = args.real_widths
    logging.basicConfig(level=logging.WARNING)
    from llava_train.model import assemble_llava
    from llava_train.world import generate_world

    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = Path(tmp)
        world = args.tmp / "world"
        generate_world(world, preset=args.preset, seed=0)
        tower, lm = (_real_width_parts if args.real_widths else _tiny_parts)(args.tmp, world)
        results = []
        for stage, template, data in (("stage1", "plain", "stage1.json"), ("stage2", "vicuna_v1", "stage2.json")):
            init = assemble_llava(tower, lm, args.tmp / f"init-{stage}", template=template)
            for ours in (False, True):
                r = bench_one(init, world / "llava" / data, world / "llava/images", template, stage, ours, args)
                results.append(r)
                extra = f", peak {r['peak_mem_gib']:.1f} GiB, MFU {r['mfu']:.1%}" if "mfu" in r else ""
                print(f"{stage} {r['side']:>8}: {r['tokens_per_s']:10.1f} tokens/s over {r['tokens']} tokens, "
                      f"mean loss {r['mean_loss']:.3f}{extra}", flush=True)
            base, ours_r = results[-2], results[-1]
            print(f"{stage} ratio ours/baseline: {ours_r['tokens_per_s'] / base['tokens_per_s']:.2f}x", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(math.isfinite(r["last_loss"]) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
