"""Helpers for the llava_train tests: a tiny tower dir, a tiny LM, run launchers.

    from tests.llava_helpers import make_tower, make_lm, write_json
    tower = make_tower(tmp / "tower")        # 32 px, patch 8 -> 16 image tokens
    lm = make_lm(world_dir, tmp / "lm")      # tiny preset, BPE on the world's corpus

The tower comes from the tower adapter (`clips_tower.adapter.export_tower` on the tiny CLIPS
config, random weights).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from clips_tower.distributed import free_port  # re-exported for the tests

REPO = Path(__file__).resolve().parents[1]


def import_script(name: str):
    """The module `scripts/<name>.py` (scripts are not a package; this imports one by path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_tower(out: Path) -> Path:
    from clips_tower.adapter import export_tower

    return Path(export_tower(str(REPO / "configs/clips/models/tiny.json"), out, random_init=True))


def make_lm(world: Path, out: Path, steps: int = 0) -> Path:
    from llava_train.lm import init_lm, pretrain_lm

    init_lm(world, out / "init", preset="tiny")
    if not steps:
        return out / "init"
    pretrain_lm(out / "init", world, out / "pretrained", steps=steps, batch_size=8, block_size=64)
    return out / "pretrained"


def write_json(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def offline_env(**extra) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1")
    env.update(extra)
    return env


def torchrun(nproc: int, args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node N -m llava_train.train ARGS` on CPU; raises with the log on failure."""
    port = free_port()  # --master_port=0 hangs DeepSpeed's gloo init here: pick a free port
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={port}",
           "-m", "llava_train.train", *args]
    r = subprocess.run(cmd, cwd=REPO, env=offline_env(), capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}")
    return r


def start_script(script: str, args: list[str], log: Path, **env) -> subprocess.Popen:
    """`scripts/SCRIPT ARGS` in the background (offline env + `env`), stdout and stderr into `log`;
    its own process group, so `stop_group` ends the launcher and every worker it started."""
    with open(log, "w") as f:
        return subprocess.Popen([str(REPO / "scripts" / script), *args], cwd=REPO, env=offline_env(**env),
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)


def stop_group(proc: subprocess.Popen) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
