"""Benchmark LLaVA training throughput: our trainer vs stock HF Trainer + Llava with plain padding.

    .venv/bin/python scripts/bench_llava_train.py --steps 30 --check-exact             # tiny world, CPU
    .venv/bin/python scripts/bench_llava_train.py --steps 30 --preset demo             # demo world + demo shapes
    python scripts/bench_llava_train.py --real-widths --device cuda --steps 10 --stages stage1,stage2

Both sides train the same assembled stock Llava on the same data, with the same batch size,
optimizer and schedule, for stage 1 (projector only, `plain`) and stage 2 (projector + LLM,
`vicuna_v1`), in one process, one after the other. The baseline is `transformers.Trainer` with a
random sampler and a collator that pads every batch to its longest sample. Ours is `LlavaTrainer`
with the speed-ups named by `--ours` (default all): LLaVA-1.5 `group_by_modality_length`,
sequence packing (`llava_train.packing`), the frozen-tower feature cache
(`llava_train.feature_cache`, built before training; its one-off cost is printed and also folded
into a second ratio) and LM-head logits only at labelled positions. Tokens/s counts the batch's
sample tokens (image tokens included, padding not), over the steps after `--warmup`, each step
timed end to end (data loading included); steps slower than 3x the median (another process took
the shared CPU) are dropped from both sums. Loss curves are compared step by step; with
`--check-exact` ours also runs without grouping (the baseline's sample order), where the losses
must agree to float noise. At real widths (random ViT-L/14-336 tower + ~1.2B Llama, bf16,
gradient checkpointing) it also reports peak memory and MFU vs `--peak-tflops` (989 = H100 bf16
dense). `--json FILE` writes every number and loss curve.
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


def _embedded_parts(tmp: Path, world: Path, preset: str) -> tuple[Path, Path]:
    """The world preset's own tower shape (configs/clips/models/PRESET.json) and LM preset, random weights."""
    from clips_tower.adapter import export_tower
    from llava_train.lm import init_lm

    repo = Path(__file__).resolve().parents[1]
    return export_tower(str(repo / f"configs/clips/models/{preset}.json"), tmp / "tower", random_init=True), \
        init_lm(world, tmp / "lm", preset=preset)


class _Meter:
    """Adds `n_tokens` (the batch's sample tokens: image tokens included, padding not) to each batch."""

    def __init__(self, collator, num_image_tokens: int, stock: bool = False):
        self.collator, self.num_image_tokens, self.stock = collator, num_image_tokens, stock

    def __call__(self, batch):
        out = self.collator(batch)
        if self.stock:
            out.pop("bad_samples", None)  # our trainer's bad-sample report; stock Trainer passes every key to forward
        n_images = sum(1 for b in batch if "pixel_values" in b or "image_row" in b)
        out["n_tokens"] = torch.tensor([sum(len(b["input_ids"]) for b in batch), n_images * self.num_image_tokens])
        return out


def _counting(trainer_cls):
    """`trainer_cls` that pops `n_tokens` before each step and records it (works with dataloader workers)."""

    class Counting(trainer_cls):
        def training_step(self, model, inputs, num_items_in_batch=None):
            self.bench_tokens.append(inputs.pop("n_tokens").tolist())  # [tokens, image tokens]
            return super().training_step(model, inputs, num_items_in_batch)

    return Counting


class _Timer(TrainerCallback):
    """Wall time of each optimizer step (end to end, data loading included)."""

    def __init__(self, device):
        self.device, self.marks = device, []

    def on_step_end(self, args, state, control, **kwargs):
        if self.device == "cuda":
            torch.cuda.synchronize()
        self.marks.append(time.perf_counter())


def _throughput(step_tokens: list[list[int]], timer: _Timer, warmup: int) -> tuple[int, int, float]:
    """(tokens, image tokens, seconds) over the steps after `warmup`; steps slower than 3x the median
    (another process took the shared CPU) are left out of all sums."""
    dts = [b - a for a, b in zip(timer.marks[warmup - 1:], timer.marks[warmup:])]
    toks = step_tokens[warmup:warmup + len(dts)]
    med = sorted(dts)[len(dts) // 2]
    kept = [(n, dt) for n, dt in zip(toks, dts) if dt <= 3 * med]
    return sum(n[0] for n, _ in kept), sum(n[1] for n, _ in kept), sum(dt for _, dt in kept)


def _training_args(cls, stage: str, ours: bool, args, **extra):
    """The training arguments both sides share (`extra`: ours' LLaVA fields)."""
    return cls(
        output_dir=str(args.tmp / f"{stage}-{ours}"), max_steps=args.steps, per_device_train_batch_size=args.batch_size,
        learning_rate=1e-3 if stage == "stage1" else 2e-5, lr_scheduler_type="cosine", weight_decay=0.0,
        logging_steps=1, save_strategy="no", report_to=[], seed=0, bf16=args.bf16, disable_tqdm=True,
        use_cpu=args.device == "cpu", dataloader_num_workers=args.workers, gradient_checkpointing=args.real_widths,
        remove_unused_columns=False, **extra)  # keeps n_tokens (and image_row) in the batch


def _our_trainer(init: Path, data: Path, images: Path, template: str, stage: str, args):
    """Our side exactly as `llava_train.run` builds it (`build_trainer`), with the speed-ups in `--ours`."""
    from llava_train.run import build_trainer
    from llava_train.train import DataArguments, LlavaTrainingArguments, ModelArguments
    from llava_train.trainer import LlavaTrainer

    margs = ModelArguments(model_name_or_path=str(init), stage=stage)
    dargs = DataArguments(data_path=str(data), image_folder=str(images), template=template,
                          max_bad_sample_fraction=1.0, data_index_dir=str(Path(init).parent / "data_index"))
    targs = _training_args(
        LlavaTrainingArguments, stage, True, args, model_max_length=args.max_len,
        group_by_modality_length="grouping" in args.ours, length_group_mult=args.length_group_mult,
        packing="packing" in args.ours, packing_max_length=args.packing_max_length,
        feature_cache="cache" in args.ours, label_logits_only="label_logits" in args.ours)
    built = build_trainer(margs, dargs, targs, trainer_cls=_counting(LlavaTrainer))
    built.trainer.data_collator = _Meter(built.trainer.data_collator, built.dataset.num_image_tokens)
    return built.trainer, built.cache_seconds


def _stock_trainer(init: Path, data: Path, images: Path, template: str, stage: str, args):
    """The baseline: stock Trainer + stock Llava, random sampler, every batch padded to its longest sample."""
    from transformers import AutoProcessor, LlavaForConditionalGeneration, Trainer, TrainingArguments

    from llava_train.data import LlavaCollator, LlavaDataset
    from llava_train.model import image_seq_length
    from llava_train.stages import apply_stage, get_stage

    processor = AutoProcessor.from_pretrained(init)
    ds = LlavaDataset(data, images, processor, template, args.max_len, max_bad_sample_fraction=1.0,
                      index_dir=Path(init).parent / "data_index", image_seq_length=image_seq_length(init))
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model = LlavaForConditionalGeneration.from_pretrained(init, dtype=dtype, attn_implementation="sdpa").to(args.device)
    model.config.use_cache = False  # as llava_train.run does
    apply_stage(model, get_stage(stage))
    vcfg = model.config.vision_config
    collator = _Meter(LlavaCollator(processor.tokenizer.pad_token_id, ds.image_token_id, ds.num_image_tokens,
                                    (3, vcfg.image_size, vcfg.image_size)), ds.num_image_tokens, stock=True)
    targs = _training_args(TrainingArguments, stage, False, args)
    return _counting(Trainer)(model=model, args=targs, train_dataset=ds, data_collator=collator), 0.0


def bench_one(init: Path, data: Path, images: Path, template: str, stage: str, ours: bool, args) -> dict:
    """Train one side for `--steps` and measure it: tokens/s, losses, (CUDA) peak memory and MFU."""
    torch.manual_seed(0)
    trainer, cache_s = (_our_trainer if ours else _stock_trainer)(init, data, images, template, stage, args)
    trainer.bench_tokens = []
    timer = _Timer(args.device)
    trainer.add_callback(timer)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    tokens, image_tokens, dt = _throughput(trainer.bench_tokens, timer, args.warmup)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    r = {"stage": stage, "side": "ours" if ours else "baseline", "tokens": tokens, "seconds": dt,
         "tokens_per_s": tokens / dt, "cache_build_s": cache_s, "losses": losses, "first_loss": losses[0],
         "last_loss": losses[-1], "mean_loss": sum(losses) / len(losses)}
    if args.device == "cuda":
        r["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        r["mfu"] = _flops(trainer.model, stage, tokens, image_tokens) / dt / (args.peak_tflops * 1e12)
    del trainer
    return r


def _flops(model, stage: str, tokens: int, image_tokens: int) -> float:
    """Model FLOPs the steps needed (recompute not counted): LM 6 x params per token when it trains (stage 2),
    4 x when frozen (forward + activation gradients, stage 1); the frozen tower's forward, 2 x params per
    patch, counts for both sides (the cache moves that work out of the loop, it does not remove it)."""
    n_lm = sum(p.numel() for n, p in model.named_parameters() if "vision_tower" not in n and "embed_tokens" not in n)
    n_tower = sum(p.numel() for n, p in model.named_parameters() if "vision_tower" in n)
    return (6 if stage == "stage2" else 4) * n_lm * tokens + 2 * n_tower * image_tokens


def _compare(base: dict, ours: dict) -> str:
    """Ratio line + loss-curve agreement (mean |diff| of the per-step losses vs the baseline's own spread)."""
    import statistics

    diffs = [abs(a - b) for a, b in zip(base["losses"], ours["losses"])]
    spread = statistics.pstdev(base["losses"]) if len(base["losses"]) > 1 else 0.0
    ratio = ours["tokens_per_s"] / base["tokens_per_s"]
    with_build = ours["tokens"] / (ours["seconds"] + ours["cache_build_s"]) / base["tokens_per_s"]
    return (f"{base['stage']} ratio ours/baseline: {ratio:.2f}x"
            + (f" ({with_build:.2f}x counting the one-off cache build, {ours['cache_build_s']:.2f} s)"
               if ours["cache_build_s"] else "")
            + f"; loss curves: mean |diff| {sum(diffs) / len(diffs):.4f} (baseline step-to-step std {spread:.4f}), "
              f"mean loss {base['mean_loss']:.4f} vs {ours['mean_loss']:.4f}")


STAGES = {"stage1": ("plain", "stage1.json"), "stage2": ("vicuna_v1", "stage2.json")}
FEATURES = ("grouping", "packing", "cache", "label_logits")


def _dashed(p: argparse.ArgumentParser, name: str, **kw) -> None:
    """`--a-b` (shown in --help) with `--a_b` as a hidden alias (the old spelling, for one release)."""
    p.add_argument("--" + name.replace("_", "-"), dest=name, **kw)
    p.add_argument("--" + name, dest=name, help=argparse.SUPPRESS, default=argparse.SUPPRESS,
                   **{k: v for k, v in kw.items() if k not in ("help", "default")})


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  .venv/bin/python scripts/bench_llava_train.py --steps 30 --preset tiny\n"
                                       "  python scripts/bench_llava_train.py --real-widths --device cuda --steps 10")
    p.add_argument("--steps", type=int, default=60)
    _dashed(p, "batch_size", type=int, default=8)
    _dashed(p, "max_len", type=int, default=2048)
    p.add_argument("--preset", default="tiny", help="world preset (tiny | demo); also picks the tower and LM shapes")
    p.add_argument("--stages", default="stage1,stage2", help="comma list of stage1, stage2")
    p.add_argument("--ours", default=",".join(FEATURES), help=f"our side's speed-ups, comma list of {FEATURES}")
    _dashed(p, "packing_max_length", type=int, default=None,
            help="row length for packing (default: the batch's longest sample)")
    _dashed(p, "length_group_mult", type=int, default=8,
            help="ours' grouping sorts this many steps of samples together (1 = LLaVA-1.5 exactly)")
    p.add_argument("--check-exact", dest="check_exact", action="store_true",
                   help="also run ours without grouping (same sample order as the baseline): losses must match")
    p.add_argument("--real-widths", dest="real_widths", action="store_true")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads (1: steadier on a shared machine)")
    _dashed(p, "peak_tflops", type=float, default=989.0)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--json")
    return p


def _bench_stage(init: Path, world: Path, stage: str, args) -> list[dict]:
    """Baseline and ours for one stage (and, with --check-exact, ours in the baseline's order); printed."""
    template, data = STAGES[stage]

    def run(ours: bool) -> dict:
        return bench_one(init, world / "llava" / data, world / "llava/images", template, stage, ours, args)

    base, ours_r = run(False), run(True)
    for r in (base, ours_r):
        extra = f", peak {r['peak_mem_gib']:.1f} GiB, MFU {r['mfu']:.1%}" if "mfu" in r else ""
        print(f"{stage} {r['side']:>8}: {r['tokens_per_s']:10.1f} tokens/s over {r['tokens']} tokens "
              f"({r['seconds']:.2f} s), mean loss {r['mean_loss']:.4f}{extra}", flush=True)
    print(_compare(base, ours_r), flush=True)
    results = [base, ours_r]
    if args.check_exact:
        grouping, args.ours = args.ours, args.ours - {"grouping"}
        same = run(True)
        args.ours = grouping
        worst = max(abs(a - b) for a, b in zip(base["losses"], same["losses"]))
        print(f"{stage} exactness: ours without grouping vs baseline, max |loss diff| over "
              f"{len(same['losses'])} steps = {worst:.2e}", flush=True)
        results.append({**same, "side": "ours_same_order", "max_loss_diff": worst})
    return results


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    stages = args.stages.split(",")
    args.ours = set(args.ours.split(",")) - {""}
    bad = [x for x in stages if x not in STAGES] + sorted(args.ours - set(FEATURES))
    if bad or args.warmup < 1 or args.steps < args.warmup + 2:
        p.error(f"unknown names {bad}" if bad else "need --warmup >= 1 and --steps >= warmup + 2")
    args.bf16 = args.real_widths
    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    from clips_tower.world import generate_world
    from llava_train.model import assemble_llava

    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = Path(tmp)
        world = args.tmp / "world"
        generate_world(world, preset=args.preset, seed=0)
        tower, lm = _real_width_parts(args.tmp, world) if args.real_widths else _embedded_parts(args.tmp, world, args.preset)
        init = assemble_llava(tower, lm, args.tmp / "init")  # one stock Llava; each stage renders its own template
        results = [r for stage in stages for r in _bench_stage(init, world, stage, args)]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(math.isfinite(r["last_loss"]) for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
