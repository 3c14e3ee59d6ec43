"""Multi-node launch: two "nodes" on localhost, each `scripts/finetune.sh` with LAUNCHER=torchrun.

    pytest -q tests/test_multinode.py

Node 0 and node 1 (NNODES=2, NODE_RANK=0|1, one process each, static rendezvous at
MASTER_ADDR:MASTER_PORT) train 2 steps of the tiny stage 2. Shared storage (ZeRO-3): one output
dir, the initial Llava assembled once (global rank 0; the other node waits for it), the final
model saved once. Node-local disks (`--save_on_each_node true`, one output dir per node, ZeRO-2):
each node assembles its own initial Llava and saves its own complete copy; with ZeRO-3 (full
weights gathered on global rank 0 only) that is refused up front.
"""
from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import pytest

from tests.llava_helpers import free_port, make_lm, make_tower, start_script, stop_group

pytestmark = pytest.mark.slow
BATCH = "Total train batch size (w. parallel, distributed & accumulation) = 8"  # 2 nodes x 4 samples


@pytest.fixture(scope="module")
def setup(tiny_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("multinode")
    return {"world": tiny_world, "tower": make_tower(tmp / "tower"), "lm": make_lm(tiny_world, tmp / "lm")}


def _two_nodes(s, tmp_path, outs, *extra, timeout=300):
    """Launch node 0 and node 1 at once (output dir `outs[rank]`); wait for both; their logs."""
    w = s["world"] / "llava"
    port = free_port()
    logs = [tmp_path / f"node{rank}.log" for rank in (0, 1)]
    procs = []
    for rank in (0, 1):
        args = ["--config", "configs/llava/stage2_tiny.yaml", "--model_name_or_path", str(s["lm"]),
                "--vision_tower", str(s["tower"]), "--data_path", str(w / "stage2.json"),
                "--image_folder", str(w / "images"), "--output_dir", str(outs[rank]), "--max_steps", "2",
                "--log_level", "info", "--log_level_replica", "info", *extra]
        procs.append(start_script("finetune.sh", args, logs[rank], LAUNCHER="torchrun", NNODES="2",
                                  NODE_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NPROC="1"))
    try:
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):  # one node failed: the other may wait for it
                deadline = min(deadline, time.monotonic() + 10)
            time.sleep(0.5)
    finally:
        for p in procs:
            stop_group(p)
    text = [log.read_text() for log in logs]
    tails = "\n".join(f"--- node {r} (rc {p.returncode}) ---\n{t[-6000:]}" for r, (p, t) in enumerate(zip(procs, text)))
    assert [p.returncode for p in procs] == [0, 0], tails
    # Both nodes took part: each trained in one world of 2 ranks (rank 1 on node 1).
    assert BATCH in text[0] and BATCH in text[1], tails
    return text


def _check_stock_llava(out):
    """`out` holds one complete, trained stock Llava (+ the assembled init/), no leftovers."""
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "mm_projector.safetensors", "init", "run_report.json"} <= names
    leftovers = [p for p in out.rglob("*") if (p.is_dir() and p.name.startswith(".")) or ".tmp" in p.name
                 or p.name.startswith("checkpoint-")]  # staging dirs, temp files
    assert not leftovers, leftovers
    report = json.loads((out / "run_report.json").read_text())
    assert report["global_step"] == 2 and [s for s, _ in report["losses"]] == [1, 2], report
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    AutoProcessor.from_pretrained(out)
    init = LlavaForConditionalGeneration.from_pretrained(out / "init").state_dict()
    final = LlavaForConditionalGeneration.from_pretrained(out).state_dict()
    assert set(init) == set(final)
    assert all(final[k].shape == init[k].shape and final[k].numel() > 0 for k in init)  # not ZeRO-3 stubs
    assert any(not (init[k] == final[k]).all() for k in init if "language_model" in k)  # it trained
    assert all((init[k] == final[k]).all() for k in init if "vision_tower" in k)  # stage 2: tower frozen
    return final


def test_two_nodes_shared_storage_one_stock_llava(setup, tmp_path):
    out = tmp_path / "out"
    text = _two_nodes(setup, tmp_path, [out, out])
    _check_stock_llava(out)
    # Built and saved once, by global rank 0 (node 0).
    assert "saved stock Llava" in text[0] and "saved stock Llava" not in text[1]
    assert "Saving model checkpoint" in text[0] and "Saving model checkpoint" not in text[1]


def test_two_nodes_save_on_each_node_local_disks(setup, tmp_path):
    outs = [tmp_path / "node0-disk" / "out", tmp_path / "node1-disk" / "out"]  # one "local disk" per node
    text = _two_nodes(setup, tmp_path, outs, "--save_on_each_node", "true", "--deepspeed",
                      "configs/deepspeed/zero2.json")
    a, b = (_check_stock_llava(out) for out in outs)
    assert all((a[k] == b[k]).all() for k in a)  # one training run, two identical copies
    assert all("saved stock Llava" in t and "Saving model checkpoint" in t for t in text)


def test_save_on_each_node_zero3_multinode_refused_up_front(monkeypatch):
    # ZeRO-3 gathers the full weights on global rank 0 only, so node 1 could not save a model:
    # refused at the start of the run, before any work (here rank 1 of 2 nodes x 1 process).
    import transformers.integrations.deepspeed as hf_ds

    from llava_train.run import run
    from llava_train.train import DataArguments, ModelArguments

    monkeypatch.setattr(hf_ds, "is_deepspeed_zero3_enabled", lambda: True)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    targs = SimpleNamespace(save_on_each_node=True, world_size=2, process_index=1, local_process_index=0)
    with pytest.raises(ValueError, match="save_on_each_node with ZeRO-3 on several nodes"):
        run(ModelArguments(model_name_or_path="unused"), DataArguments(data_path="unused"), targs)


@pytest.mark.parametrize("env, faked", [
    ({}, True),  # one process, no launcher: a local world of 1
    ({"RANK": "1", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}, False),
    ({"WORLD_SIZE": "2"}, False),  # several processes but no RANK (mpirun/srun into python): DeepSpeed's MPI discovery
    ({"OMPI_COMM_WORLD_SIZE": "2"}, False),
])
def test_cpu_deepspeed_setup_keeps_a_launchers_env(monkeypatch, env, faked):
    import deepspeed
    import torch

    from clips_tower.distributed import setup_distributed

    if torch.cuda.is_available():
        pytest.skip("the CPU set-up only")
    keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE",
            "SLURM_STEP_NUM_TASKS")
    for k in keys:
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    calls = []
    monkeypatch.setattr(deepspeed, "init_distributed", lambda **kw: calls.append(kw))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    setup_distributed("configs/deepspeed/zero3.json")
    after = {k: os.environ.get(k) for k in keys}
    if faked:
        assert after["RANK"] == "0" and after["WORLD_SIZE"] == "1" and after["MASTER_ADDR"] == "127.0.0.1"
    else:
        assert after == {k: env.get(k) for k in keys}  # untouched
    assert calls == [{"dist_backend": "gloo"}]
