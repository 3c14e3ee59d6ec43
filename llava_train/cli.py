"""`clips-llava llava ...`: train a stage, check its data, merge a LoRA adapter, move projector weights.

    clips-llava llava train --config configs/llava/stage1_tiny.yaml --model_name_or_path runs/lm \
        --vision_tower runs/tower --data_path runs/world/llava/stage1.json \
        --image_folder runs/world/llava/images --output_dir runs/stage1
    clips-llava llava check-data --config configs/llava/stage2_tiny.yaml ... --show 2 --report check.json
    clips-llava llava merge-lora --model runs/lora --out runs/lora-merged
    clips-llava llava projector export --model runs/stage1 --out runs/mm_projector.bin
    clips-llava llava projector import --model mm_projector.bin --out runs/mm_projector.safetensors

`llava train` is `python -m llava_train.train` without a launcher (one process; DeepSpeed gets a
single-rank environment). For several processes use `scripts/*.sh` (deepspeed / torchrun).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from clips_tower.flags import renamed

ALIASES = {"--adapter": "--model", "--src": "--model"}  # old spellings, kept for one release

EXAMPLES = {
    "train": "clips-llava llava train --config configs/llava/stage1_tiny.yaml --model_name_or_path runs/lm "
             "--vision_tower runs/tower --data_path runs/world/llava/stage1.json "
             "--image_folder runs/world/llava/images --output_dir runs/stage1",
    "check-data": "clips-llava llava check-data --config configs/llava/stage2_tiny.yaml --model_name_or_path runs/lm "
                  "--vision_tower runs/tower --data_path runs/world/llava/stage2.json "
                  "--image_folder runs/world/llava/images --output_dir runs/stage2 --show 2 --report runs/check.json",
    "merge-lora": "clips-llava llava merge-lora --model runs/lora --out runs/lora-merged",
    "export": "clips-llava llava projector export --model runs/stage1 --out runs/mm_projector.bin",
    "import": "clips-llava llava projector import --model mm_projector.bin --out runs/mm_projector.safetensors",
}


def _sub(sub, name, help_, example_key=None):
    return sub.add_parser(name, help=help_, description=help_, epilog="example:\n  " + EXAMPLES[example_key or name],
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clips-llava llava", description="LLaVA training and weight tools",
                                epilog="example:\n  " + EXAMPLES["train"], formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    _sub(sub, "train", "train one stage: --config FILE [--field value ...] (see llava_train/train.py)")
    c = _sub(sub, "check-data", "the full data pass of `train` without training: bad samples by reason, lengths, "
                                "learned spans; takes `train`'s --config FILE and --field value arguments, plus:")
    c.add_argument("--workers", type=int, help="processes that build and decode the samples (default min(4, cores))")
    c.add_argument("--show", type=int, help="print N rendered samples with the learned tokens marked")
    c.add_argument("--report", help="write the counts as JSON here")
    c.add_argument("--write-clean", help="write the input without its bad records here (JSON list, same order)")
    m = _sub(sub, "merge-lora", "merge a LoRA adapter into its base; writes a stock HF Llava dir")
    m.add_argument("--model", required=True, help="LoRA adapter dir: a LoRA run's output (adapter_config.json)")
    m.add_argument("--base", help="base Llava dir (default: the adapter's base_model_name_or_path)")
    m.add_argument("--out", required=True)
    proj = _sub(sub, "projector", "import/export projector weights (LLaVA-1.5 mm_projector.bin)", "export")
    psub = proj.add_subparsers(dest="action", required=True)
    for action, help_ in (("export", "to a .bin (LLaVA-1.5 keys) or .safetensors (HF keys)"),
                          ("import", "from an mm_projector.bin into .safetensors (HF keys)")):
        a = _sub(psub, action, help_)
        a.add_argument("--model", required=True, help="stage-1 dir, .safetensors or mm_projector.bin")
        a.add_argument("--out", required=True)
    return p


def merge_lora(adapter: str | Path, out: str | Path, base: str | Path | None = None) -> Path:
    """Base Llava (full precision) + adapter -> merge_and_unload -> stock Llava dir with processor."""
    import torch
    from peft import PeftModel
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from llava_train.model import save_llava

    from clips_tower.inputs import check_model_dir, check_weights, read_json_object

    adapter, out = Path(adapter), Path(out)
    if not adapter.is_dir():
        raise ValueError(f"--model {adapter}: directory not found" if not adapter.exists()
                         else f"--model {adapter}: not a directory")
    if not (adapter / "adapter_config.json").is_file():
        raise ValueError(f"--model {adapter}: not a LoRA adapter directory (no adapter_config.json)")
    adapter_cfg = read_json_object(adapter / "adapter_config.json", "adapter_config.json")
    check_weights(adapter, "LoRA adapter")
    if base is None:
        base = adapter_cfg.get("base_model_name_or_path")
        if not isinstance(base, str) or not base:
            raise ValueError(f"{adapter / 'adapter_config.json'}: no base_model_name_or_path; pass --base DIR")
    if Path(base).exists() or str(base).startswith((".", "/", "~")):
        own_processor = (adapter / "processor_config.json").is_file()
        check_model_dir(base, "llava", processor=not own_processor, tokenizer=not own_processor, what="base Llava")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: is a file, not a directory")
    model = LlavaForConditionalGeneration.from_pretrained(base, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    processor = AutoProcessor.from_pretrained(adapter if (adapter / "processor_config.json").is_file() else base)
    return save_llava(model, processor, out)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"] and not {"-h", "--help"} & set(argv):
        from llava_train.train import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["check-data"] and not {"-h", "--help"} & set(argv):
        from llava_train.check_data import main as check_main

        return check_main(argv[1:])
    args = _parser().parse_args(renamed(argv, ALIASES, "clips-llava llava"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.cmd == "merge-lora":
            print(f"merged -> {merge_lora(args.model, args.out, args.base)}")
        elif args.cmd == "projector":
            from llava_train.projector import read_projector, write_projector

            if args.action == "import" and not str(args.out).endswith(".safetensors"):
                raise ValueError("import writes a .safetensors file (--out ...safetensors)")
            print(f"wrote {write_projector(read_projector(args.model), args.out)}")
    except (FileNotFoundError, ValueError) as e:
        from llava_train.errors import report

        return report(f"clips-llava llava {args.cmd}", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
