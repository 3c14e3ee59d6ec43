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
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
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


def read_yaml_config(path: str) -> dict:
    """The run config's mapping; ValueError naming the file when it is missing or not a YAML mapping."""
    from clips_tower.inputs import read_yaml_mapping

    cfg = read_yaml_mapping(path, "a mapping of field: value")
    bad = [k for k in cfg if not isinstance(k, str)]
    if bad:
        raise ValueError(f"{path}: field names must be strings, got {bad[0]!r}")
    return cfg


def yaml_to_argv(path: str) -> list[str]:
    """A flat YAML mapping as `--key value` arguments (lists expand, bools as true/false)."""
    cfg = read_yaml_config(path)
    argv = []
    for k, v in cfg.items():
        if v is None:
            continue
        if isinstance(v, dict):
            v = json.dumps(v)
        argv.append(f"--{k}")
        argv += [str(x) for x in v] if isinstance(v, list) else [str(v).lower() if isinstance(v, bool) else str(v)]
    return argv


class _Parser(HfArgumentParser):
    """HfArgumentParser whose usage errors are a ValueError (one line) instead of its whole usage + exit."""

    config: str | None = None
    cli_flags: frozenset[str] = frozenset()
    before_build = None  # called with the parsed namespace before the dataclasses are built

    def parse_known_args(self, args=None, namespace=None):
        namespace, rest = super().parse_known_args(args, namespace)
        if self.before_build is not None:
            self.before_build(namespace)
        return namespace, rest

    def error(self, message):
        m = re.match(r"argument (--[\w-]+)", message)
        flag = m.group(1).replace("-", "_").lstrip("_") if m else None
        if self.config and flag and flag not in self.cli_flags:
            raise ValueError(f"{self.config}: {message}")
        raise ValueError(message)


def _config_path(argv: list[str]) -> str | None:
    if "--config" not in argv:
        return None
    if argv.count("--config") > 1:
        raise ValueError("--config given more than once")
    i = argv.index("--config")
    if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
        raise ValueError("--config needs a YAML file")
    return argv[i + 1]


def parse_args(argv: list[str], defaults: dict | None = None, before_build=None):
    """(ModelArguments, DataArguments, LlavaTrainingArguments) from `--config FILE` + CLI overrides.

    `defaults`: field defaults of this call (the YAML and the CLI still win); `before_build(namespace)`:
    runs once every field is parsed and before TrainingArguments is built (which sets up the devices)."""
    config = _config_path(argv)
    parser = _Parser((ModelArguments, DataArguments, LlavaTrainingArguments))
    if defaults:
        parser.set_defaults(**defaults)
    parser.before_build = before_build
    parser.cli_flags = frozenset(a.split("=")[0].lstrip("-").replace("-", "_") for a in argv if a.startswith("--"))
    if config is not None:
        i = argv.index("--config")
        argv = yaml_to_argv(config) + argv[:i] + argv[i + 2:]  # CLI after YAML: CLI wins
        parser.config = config
    *parsed, rest = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if rest:
        names = [a.split("=")[0].lstrip("-") for a in rest if a.startswith("-")] or rest
        from_cli = [n for n in names if n.replace("-", "_") in parser.cli_flags]
        where = "on the command line" if from_cli or not config else f"in {config}"
        raise ValueError(f"unknown field(s) {', '.join(names)} {where}; see `clips-llava llava train --help`")
    return tuple(parsed)


def _check_path(value: str | None, flag: str, kind: str) -> Path | None:
    """A local path argument that must exist: `kind` "file", "dir" or "any"."""
    if not value:
        return None
    p = Path(value)
    if not p.exists():
        raise ValueError(f"{flag} {value}: not found")
    if kind == "dir" and not p.is_dir() or kind == "file" and not p.is_file():
        raise ValueError(f"{flag} {value}: not a {'directory' if kind == 'dir' else 'file'}")
    return p


def check_inputs(margs, dargs, targs) -> None:
    """Every path and name a run reads, checked before anything is assembled or loaded, so a bad one is
    one line naming it (used by `llava train` and `llava check-data`). Hub ids are left to the hub."""
    from clips_tower.inputs import LLAVA, check_model_dir, check_safetensors
    from clips_tower.io import check_known
    from llava_train.model import IMAGE_ASPECT_RATIOS
    from llava_train.stages import get_stage
    from llava_train.templates import get_template

    get_stage(margs.stage, margs.train_tower)
    get_template(dargs.template)
    check_known(dargs.image_aspect_ratio, IMAGE_ASPECT_RATIOS, "image_aspect_ratio")
    if not margs.model_name_or_path:
        raise ValueError("--model_name_or_path is required (a causal LM or a Llava directory)")
    model = Path(margs.model_name_or_path)
    if model.exists() or margs.model_name_or_path.startswith((".", "/", "~")):
        config = check_model_dir(model, tokenizer=True, what="model_name_or_path")  # config, weights, tokenizer
        if config.get("model_type") == LLAVA:
            check_model_dir(model, weights=False, processor=True, what="model_name_or_path")
    if margs.vision_tower and (Path(margs.vision_tower).exists() or margs.vision_tower.startswith((".", "/", "~"))):
        check_model_dir(margs.vision_tower, processor=True, what="vision_tower")
    adapter = _check_path(margs.pretrain_mm_mlp_adapter, "--pretrain_mm_mlp_adapter", "any")
    if adapter is not None and adapter.suffix == ".safetensors":
        check_safetensors(adapter)
    if not dargs.data_path:
        raise ValueError("--data_path is required (a LLaVA-1.5 conversation JSON)")
    _check_path(dargs.data_path, "--data_path", "file")
    _check_path(dargs.image_folder, "--image_folder", "dir")
    for flag in ("output_dir", "data_index_dir", "feature_cache_dir"):
        value = getattr(targs, flag, None) if flag != "data_index_dir" else dargs.data_index_dir
        if value and Path(value).exists() and not Path(value).is_dir():
            raise ValueError(f"--{flag} {value}: is a file, not a directory")


def parse_run_args(argv: list[str]):
    """`parse_args` for a run that trains in this process: without CUDA `use_cpu` defaults to true (the
    YAML or the CLI, in either spelling, can still say false), and the parsed `deepspeed` (YAML or CLI)
    sets up the process (clips_tower.distributed.setup_distributed) before TrainingArguments is built."""
    from clips_tower import distributed

    return parse_args(argv, defaults=None if torch.cuda.is_available() else {"use_cpu": True},
                      before_build=lambda namespace: distributed.setup_distributed(namespace.deepspeed))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    margs, dargs, targs = parse_run_args(argv)
    check_inputs(margs, dargs, targs)
    from llava_train.data_index import DataFileError
    from llava_train.run import run
    from llava_train.skips import TooManyBadSamples

    try:
        return run(margs, dargs, targs)
    except (DataFileError, TooManyBadSamples) as e:  # bad data: one clear line, no traceback
        from llava_train.errors import report

        return report("clips-llava llava train", e)


if __name__ == "__main__":  # the stage scripts' entry point: bad input is one line here too
    from llava_train.errors import run_guarded

    sys.exit(run_guarded("clips-llava llava train", main))
