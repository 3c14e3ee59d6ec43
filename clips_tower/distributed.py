"""The distributed machinery in one place: launcher env, torch.distributed, DeepSpeed/ZeRO.

    from clips_tower.distributed import setup_distributed, whole_weights, base_llava, numel, is_partitioned
    setup_distributed(deepspeed_config)   # before TrainingArguments: CPU + DeepSpeed gets gloo (and a local env)
    with whole_weights(targs): ...        # load models whole inside (no ZeRO-3 partitioned init)
    base_llava(model)                     # the Llava inside DDP / DeepSpeedEngine / peft wrappers
    numel(p), is_partitioned(p)           # a parameter's full size and whether ZeRO-3 partitioned it
    rank, world, device = init_distributed()   # CLIPS pretraining: 1 process, or N under torchrun
    states = gather(obj, world)                # [obj of rank 0, obj of rank 1, ...] on every rank
    terms = mean_over_ranks(terms, world)      # loss terms of the global batch

Also here: which process writes what with several nodes (`check_save_on_each_node`,
`local_mains_write`, `writes_as_told`), the step list all ranks agree on (`common_steps`), the
name of DeepSpeed's checkpoint tag file and a free localhost port (also for scripts/launch_stage.sh).
Everything else distributed is stock HF Trainer / accelerate (LLaVA) or torch DDP (CLIPS). It sits
in clips_tower, the lowest package, so both trainers use this one module. Torch, DeepSpeed and
transformers are imported inside the functions that need them, so importing this module is cheap.
Model code (llava_train.model, clips_tower's model, captioner and adapter) never imports it.
"""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEEPSPEED_LATEST = "latest"  # DeepSpeed's tag file in a checkpoint dir: names its newest ZeRO checkpoint
_WORLD_SIZE_VARS = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- process set-up (before TrainingArguments) ----

def setup_distributed(deepspeed) -> None:
    """CPU + DeepSpeed (`deepspeed`: the parsed `--deepspeed` value; empty = off) needs gloo set up before
    TrainingArguments is built, else accelerate sees one process. A single process without a launcher
    first gets a launcher's env (`launcher_env`) so DeepSpeed does not try MPI. A launcher's env
    (torchrun / deepspeed on any node) is never touched, and a world of several processes that gives
    no RANK (mpirun / srun straight into python) is left to DeepSpeed's MPI discovery. With CUDA,
    or without DeepSpeed, nothing is done (HF Trainer / accelerate set up the process group)."""
    import torch

    if torch.cuda.is_available() or not deepspeed:
        return
    launcher_env()
    import deepspeed as ds

    if not torch.distributed.is_initialized():
        ds.init_distributed(dist_backend="gloo")


def launcher_env() -> bool:
    """The one place this project writes the process env: a process started without a launcher
    (no RANK, every world-size variable absent or 1) gets what torchrun would give a world of one,
    RANK=0 LOCAL_RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=<a free port>. Returns
    whether it wrote them; an existing launcher's env (or an MPI world) is left as it is."""
    sizes = [os.environ.get(k, "1") for k in _WORLD_SIZE_VARS]
    if "RANK" in os.environ or any(n not in ("", "1") for n in sizes):
        return False
    os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(free_port()))
    return True


# ---- ZeRO-3 ----

def zero3_enabled() -> bool:
    """Whether the HF DeepSpeed config of this process is ZeRO-3 (looked up at call time)."""
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    return is_deepspeed_zero3_enabled()


@contextmanager
def whole_weights(targs):
    """Load models whole (no ZeRO-3 partitioned init) inside: assembly works on complete weights."""
    from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config

    zero3 = zero3_enabled()
    if zero3:
        unset_hf_deepspeed_config()
    try:
        yield
    finally:
        if zero3:
            set_hf_deepspeed_config(targs.hf_deepspeed_config)


def numel(p) -> int:
    """A parameter's full element count (a ZeRO-3 partition holds only its shard; `ds_numel` is the whole)."""
    return p.ds_numel if hasattr(p, "ds_numel") else p.numel()


def is_partitioned(p) -> bool:
    """Whether ZeRO-3 partitioned this parameter (DeepSpeed tags those with `ds_id`)."""
    return hasattr(p, "ds_id")


def base_llava(model):
    """The LlavaForConditionalGeneration inside DDP / DeepSpeed / peft wrappers."""
    while hasattr(model, "module"):  # DDP, DeepSpeedEngine
        model = model.module
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# ---- which process writes (multi-node) ----

def local_world_size(targs) -> int:
    """Processes on this node: the launcher's LOCAL_WORLD_SIZE (torchrun) or LOCAL_SIZE (deepspeed), else all."""
    return int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or targs.world_size)


def check_save_on_each_node(targs) -> None:
    """Refuse up front what cannot work: `save_on_each_node` with ZeRO-3 on several nodes."""
    if targs.save_on_each_node and targs.world_size > local_world_size(targs) and zero3_enabled():
        raise ValueError("save_on_each_node with ZeRO-3 on several nodes cannot save the model on every node "
                         "(DeepSpeed gathers the full weights on global rank 0 only): put output_dir on shared "
                         "storage without save_on_each_node, or use ZeRO-2")


def writes_as_told(is_main_process: bool) -> bool:
    """`save_pretrained`'s writer check minus transformers 5's "global rank 0 only once torch.distributed
    is up", so that with `save_on_each_node` each node's local main writes its own copy (HF's convention)."""
    return is_main_process


@contextmanager
def local_mains_write(enabled: bool):
    """Inside (when `enabled`): every `save_pretrained(is_main_process=True)` writes, whatever its global rank."""
    from transformers import PreTrainedModel

    own = vars(PreTrainedModel).get("should_save_on_this_rank")
    if enabled:
        PreTrainedModel.should_save_on_this_rank = lambda self, is_main_process: writes_as_told(is_main_process)
    try:
        yield
    finally:
        if enabled and own is None:
            del PreTrainedModel.should_save_on_this_rank  # the inherited one again
        elif enabled:
            PreTrainedModel.should_save_on_this_rank = own


def common_steps(steps: list[int]) -> list[int]:
    """With several processes: the steps every rank has (node-local disks may differ); else `steps`."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return steps
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, steps)
    return sorted(set.intersection(*(set(g) for g in gathered)))


def init_distributed() -> tuple[int, int, torch.device]:
    """CLIPS pretraining's start-up: 1 process, or N under torchrun (gloo on CPU, NCCL on GPU)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return (dist.get_rank() if world > 1 else 0), world, device


def gather(obj, world: int) -> list:
    """Every rank's `obj` (any picklable value), in rank order; `[obj]` without a process group."""
    if world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(terms: dict[str, torch.Tensor], world: int) -> dict[str, torch.Tensor]:
    """Detached float terms averaged over the ranks (sorted by name): the global-batch values."""
    import torch
    import torch.distributed as dist

    names = sorted(terms)
    vec = torch.stack([terms[n].detach().float() for n in names])
    if world > 1:
        dist.all_reduce(vec)
        vec /= world
    return dict(zip(names, vec))


if __name__ == "__main__":  # `python -m clips_tower.distributed free-port` (scripts/launch_stage.sh)
    import sys

    if sys.argv[1:] != ["free-port"]:
        sys.exit("usage: python -m clips_tower.distributed free-port")
    print(free_port())
