"""clips_tower.distributed and how a run reads its process set-up from the parsed arguments (fast, no launcher).

    pytest -q tests/test_distributed.py

`deepspeed` and `use_cpu` are read from the parsed arguments (YAML or CLI, either spelling), the
single-process env is written only without a launcher, and the ZeRO-3 / wrapper helpers behave.
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from clips_tower import distributed
from clips_tower.distributed import base_llava, common_steps, is_partitioned, launcher_env, numel, setup_distributed

ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
       "SLURM_STEP_NUM_TASKS")


@pytest.fixture
def no_launcher(monkeypatch):
    """No launcher variables, and each one's original state restored afterwards. `launcher_env` writes
    os.environ itself: setting each variable through monkeypatch first makes its undo go back to the
    state before the test (a leaked RANK/MASTER_PORT would reach every later test's subprocesses)."""
    for k in ENV:
        monkeypatch.setenv(k, "")
        monkeypatch.delenv(k)


def _parsed(monkeypatch, argv, cuda=False):
    """parse_run_args(argv) without CUDA; returns (targs, the deepspeed values setup_distributed got)."""
    from llava_train.train import parse_run_args

    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(distributed, "setup_distributed", seen.append)
    *_, targs = parse_run_args(["--model_name_or_path", "m", "--data_path", "d.json", "--report_to", "none", *argv])
    return targs, seen


def test_deepspeed_is_read_once_from_the_parsed_yaml_and_cli(monkeypatch, tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("# deepspeed: not this comment\nstage: stage1\ndeepspeed: ''\n")
    _, seen = _parsed(monkeypatch, ["--config", str(cfg)])
    assert seen == [""]  # the YAML's (empty) value, not a text match on "deepspeed:"
    _, seen = _parsed(monkeypatch, [])
    assert seen == [None]


def test_deepspeed_set_up_runs_before_training_arguments_are_built(monkeypatch, tmp_path):
    from transformers import TrainingArguments

    from llava_train.train import parse_run_args

    cfg = tmp_path / "run.yaml"
    cfg.write_text("deepspeed: from-yaml.json\n")
    order = []
    monkeypatch.setattr(TrainingArguments, "__post_init__", lambda self: order.append("TrainingArguments"))
    monkeypatch.setattr(distributed, "setup_distributed", lambda ds: order.append(ds))
    parse_run_args(["--config", str(cfg), "--deepspeed", "ds.json", "--model_name_or_path", "m", "--data_path", "d"])
    assert order == ["ds.json", "TrainingArguments"]  # the CLI wins over the YAML; set-up first


@pytest.mark.parametrize("argv, use_cpu", [
    ([], True),  # no CUDA: train on the CPU
    (["--use_cpu", "false"], False),
    (["--use-cpu", "false"], False),  # the dashed spelling HfArgumentParser also accepts
    (["--use-cpu", "true"], True),
])
def test_use_cpu_defaults_to_true_without_cuda_in_either_spelling(monkeypatch, argv, use_cpu):
    targs, _ = _parsed(monkeypatch, argv)
    assert targs.use_cpu is use_cpu


def test_use_cpu_is_left_alone_with_cuda(monkeypatch):
    from transformers import TrainingArguments

    from llava_train.train import parse_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(TrainingArguments, "__post_init__", lambda self: None)  # no device set-up here
    monkeypatch.setattr(distributed, "setup_distributed", lambda ds: None)
    seen = []
    *_, targs = parse_args(["--model_name_or_path", "m", "--data_path", "d", "--report_to", "none", "--use_cpu",
                            "true"], before_build=lambda ns: seen.append(ns.use_cpu))
    assert seen == [True] and targs.use_cpu is True  # before_build saw the parsed value
    assert parse_args(["--model_name_or_path", "m", "--data_path", "d", "--report_to", "none"])[2].use_cpu is False
    from llava_train.train import parse_run_args

    assert parse_run_args(["--model_name_or_path", "m", "--data_path", "d"])[2].use_cpu is False  # CUDA: no default


def test_setup_distributed_does_nothing_without_deepspeed(monkeypatch, no_launcher):
    import deepspeed

    calls = []
    monkeypatch.setattr(deepspeed, "init_distributed", lambda **kw: calls.append(kw))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for off in (None, ""):
        setup_distributed(off)
    assert calls == [] and "RANK" not in os.environ


def test_launcher_env_only_without_a_launcher(monkeypatch, no_launcher):
    assert launcher_env() is True
    assert os.environ["RANK"] == "0" and os.environ["WORLD_SIZE"] == "1" and int(os.environ["MASTER_PORT"]) > 0
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("MASTER_PORT", "1")
    assert launcher_env() is False and os.environ["MASTER_PORT"] == "1"  # a launcher's env stays
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "4")
    assert launcher_env() is False and "RANK" not in os.environ  # an MPI/srun world: DeepSpeed discovers it


def test_numel_and_is_partitioned_see_zero3_parameters():
    p = torch.nn.Parameter(torch.zeros(3, 4))
    assert numel(p) == 12 and not is_partitioned(p)
    shard = torch.nn.Parameter(torch.zeros(0))
    shard.ds_numel, shard.ds_id = 12, 7  # what DeepSpeed ZeRO-3 leaves on a partitioned parameter
    assert numel(shard) == 12 and is_partitioned(shard)


def test_trainable_report_counts_whole_zero3_parameters():
    from llava_train.stages import trainable_report

    model = torch.nn.Module()
    model.multi_modal_projector = torch.nn.Linear(2, 3)
    model.multi_modal_projector.weight.ds_numel = 600
    assert "projector:          603 /          603 trainable" in trainable_report(model)


def test_base_llava_unwraps_ddp_deepspeed_and_peft():
    llava = torch.nn.Linear(1, 1)
    peft = SimpleNamespace(get_base_model=lambda: llava)
    assert base_llava(SimpleNamespace(module=SimpleNamespace(module=peft))) is llava
    assert base_llava(llava) is llava


def test_common_steps_without_a_process_group_is_the_input():
    assert common_steps([2, 4]) == [2, 4]


def test_save_on_each_node_zero3_refused_only_across_nodes(monkeypatch):
    from clips_tower.distributed import check_save_on_each_node

    monkeypatch.setattr(distributed, "zero3_enabled", lambda: True)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    check_save_on_each_node(SimpleNamespace(save_on_each_node=True, world_size=2))  # one node: fine
    with pytest.raises(ValueError, match="save_on_each_node with ZeRO-3"):
        check_save_on_each_node(SimpleNamespace(save_on_each_node=True, world_size=4))
    check_save_on_each_node(SimpleNamespace(save_on_each_node=False, world_size=4))


def test_llava_trainer_reads_its_fields_from_llava_training_arguments(tmp_path):
    from transformers import TrainingArguments

    from llava_train.trainer import LlavaTrainer

    model = torch.nn.Linear(1, 1)
    with pytest.raises(TypeError, match="LlavaTrainingArguments"):
        LlavaTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]))


def test_launch_stage_port_comes_from_here():
    import subprocess
    import sys

    from tests.llava_helpers import REPO

    out = subprocess.run([sys.executable, "-m", "clips_tower.distributed", "free-port"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and 0 < int(out.stdout) < 65536
    assert "clips_tower.distributed free-port" in (REPO / "scripts/launch_stage.sh").read_text()
