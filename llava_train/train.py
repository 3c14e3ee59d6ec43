"""LLaVA training entry point (both stages): YAML config + CLI overrides -> HF Trainer (+ DeepSpeed).

    deepspeed --num_gpus 8 -m llava_train.train --config configs/llava/stage1_vicuna7b_clips_l14_336.yaml
    DS_ACCELERATOR=cpu torchrun --nproc_per_node 1 -m llava_train.train --config configs/llava/stage1_tiny.yaml \
        --model_name_or_path runs/lm --vision_tower runs/tower --data_path runs/world/llava/stage1.json \
        --image_folder runs/world/llava/images --output_dir runs/stage1

Any field of the three dataclasses (ModelArguments, DataArguments, LlavaTrainingArguments = HF
`TrainingArguments` + LLaVA fields) can be set in the YAML and overridden as `--field value`.
`model_name_or_path` is either a causal LM (assembled with `vision_tower` into a stock Llava in
`OUTPUT_DIR/init`, with the projector from `pretrain_mm_mlp_adapter` if given) or a Llava dir.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, TrainingArguments

log = logging.getLogger("llava_train.train")
LORA_TARGET = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


@dataclass
class ModelArguments:
    model_name_or_path: str = field(default=None, metadata={"help": "causal LM (HF dir/name) or a Llava dir"})
    vision_tower: str | None = field(default=None, metadata={"help": "exported tower dir (clips-llava tower export)"})
    pretrain_mm_mlp_adapter: str | None = field(default=None, metadata={"help": "stage-1 dir, .safetensors or mm_projector.bin"})
    mm_projector_type: str = "mlp2x_gelu"
    stage: str = field(default="stage2", metadata={"help": "stage1 | stage2 | stage2_lora | stage2_qlora"})
    train_tower: bool = False
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.05
    lora_target_modules: str = LORA_TARGET
    attn_implementation: str = "sdpa"


@dataclass
class DataArguments:
    data_path: str = field(default=None, metadata={"help": "LLaVA-1.5 conversation JSON"})
    image_folder: str | None = None
    template: str = field(default="vicuna_v1", metadata={"help": "plain | vicuna_v1 | llava_v1 | chat_template"})
    image_aspect_ratio: str = field(default="native", metadata={
        "help": "native: the tower's own preprocessing; pad: LLaVA-1.5's expand-to-square with the mean colour"})
    max_bad_sample_fraction: float = field(default=0.01, metadata={
        "help": "stop when more than this fraction of the records (at start-up) or of the samples seen "
                "(during training) is bad"})
    bad_sample_min_seen: int = field(default=200, metadata={
        "help": "samples seen before the bad fraction during training can stop the run"})
    data_index_dir: str | None = field(default=None, metadata={
        "help": "where the memory-mapped data index is built once (default OUTPUT_DIR/data_index)"})
    check_images: bool = field(default=False, metadata={
        "help": "deprecated, ignored: images are checked when loaded; `clips-llava llava check-data` "
                "is the up-front pass"})


@dataclass
class LlavaTrainingArguments(TrainingArguments):
    model_max_length: int = 2048
    group_by_modality_length: bool = False
    length_group_mult: int = field(default=1, metadata={"help": "group_by_modality_length sorts this many steps of "
                                                                "samples together (1: LLaVA-1.5; more: less padding)"})
    mm_projector_lr: float | None = None
    vision_tower_lr: float | None = None
    interrupt_after_steps: int | None = field(default=None, metadata={"help": "stop at this step (resume tests)"})
    packing: bool = field(default=False, metadata={"help": "pack several samples per row (llava_train.packing)"})
    packing_max_length: int | None = field(default=None, metadata={"help": "packed row length (default: the "
                                                                            "batch's longest sample)"})
    feature_cache: bool = field(default=False, metadata={"help": "precompute frozen-tower features once "
                                                                 "(llava_train.feature_cache; not with ZeRO-3)"})
    feature_cache_dir: str | None = field(default=None, metadata={"help": "keep the feature cache on disk here"})
    label_logits_only: bool = field(default=True, metadata={"help": "LM head + loss only at labelled positions"})


def yaml_to_argv(path: str) -> list[str]:
    """A flat YAML mapping as `--key value` arguments (lists expand, bools as true/false)."""
    cfg = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a mapping of field: value")
    argv = []
    for k, v in cfg.items():
        if v is None:
            continue
        if isinstance(v, dict):
            v = json.dumps(v)
        argv.append(f"--{k}")
        argv += [str(x) for x in v] if isinstance(v, list) else [str(v).lower() if isinstance(v, bool) else str(v)]
    return argv


def parse_args(argv: list[str]):
    if "--config" in argv:
        i = argv.index("--config")
        argv = yaml_to_argv(argv[i + 1]) + argv[:i] + argv[i + 2:]  # CLI after YAML: CLI wins
    parser = HfArgumentParser((ModelArguments, DataArguments, LlavaTrainingArguments))
    return parser.parse_args_into_dataclasses(args=argv)


def _setup_distributed(argv: list[str]) -> None:
    """CPU + DeepSpeed needs gloo set up before TrainingArguments (DESIGN §7); single process
    without a launcher gets the launcher's env so DeepSpeed does not try MPI. A launcher's env
    (torchrun / deepspeed on any node) is never touched, and a world of several processes that
    gives no RANK (mpirun / srun straight into python) is left to DeepSpeed's MPI discovery."""
    if torch.cuda.is_available() or "--deepspeed" not in " ".join(argv) and "deepspeed:" not in argv_yaml(argv):
        return
    sizes = [os.environ.get(k, "1") for k in ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS")]
    if "RANK" not in os.environ and all(n in ("", "1") for n in sizes):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import deepspeed

    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="gloo")


def argv_yaml(argv: list[str]) -> str:
    return Path(argv[argv.index("--config") + 1]).read_text() if "--config" in argv else ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _setup_distributed(argv)
    if not torch.cuda.is_available() and "--use_cpu" not in argv:
        argv += ["--use_cpu", "true"]
    margs, dargs, targs = parse_args(argv)
    from llava_train.data_index import DataFileError
    from llava_train.run import run
    from llava_train.skips import TooManyBadSamples

    try:
        return run(margs, dargs, targs)
    except (DataFileError, TooManyBadSamples) as e:  # bad data: one clear line, no traceback
        print(f"clips-llava llava train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
