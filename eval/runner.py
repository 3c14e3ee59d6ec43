"""Build and run the lmms-eval command for a suite, and check that it really produced results.

lmms-eval 0.7.3's CLI exits 0 even when evaluation fails, so success here means: exit code 0 AND a
`*_results.json` written by this run that holds every requested task. Otherwise `EvalFailed`
carries the reason (lmms-eval's own "Error during evaluation: ..." line when it printed one).

    from clips_llava_eval.runner import load_suite, build_command, run_lmms_eval
    suite = load_suite("local")
"""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from clips_tower.io import check_known

SUITES_DIR = Path(__file__).resolve().parent / "suites"
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
# lmms-eval model classes this runner can drive: stock `llava_hf` (batch size 1, generation only)
# and ours (eval/model.py: batched, working log-likelihood).
LMMS_MODELS = ("llava_hf", "clips_llava_hf")


class EvalFailed(RuntimeError):
    """lmms-eval did not produce usable results; the message says why."""


@dataclass(frozen=True)
class Suite:
    name: str
    tasks: list[str]
    local: bool
    description: str = ""


def known_suites() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))


def load_suite(name: str) -> Suite:
    """The suite defined by `eval/suites/<name>.yaml` (exact name), else ValueError listing known ones."""
    path = SUITES_DIR / f"{name}.yaml"
    check_known(name, known_suites(), "suite")
    cfg = yaml.safe_load(path.read_text())
    return Suite(name=name, tasks=list(cfg["tasks"]), local=bool(cfg.get("local", False)),
                 description=cfg.get("description", ""))


def select_tasks(suite: Suite, only: list[str] | None) -> list[str]:
    if not only:
        return list(suite.tasks)
    unknown = [t for t in only if t not in suite.tasks]
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)} for suite {suite.name!r}; known: {', '.join(suite.tasks)}")
    return only


@dataclass
class Command:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # added to os.environ

    def shell(self) -> str:
        """Copy-pasteable form (env assignments first)."""
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return (env + " " if env else "") + shlex.join(self.argv)


def build_command(model: str, tasks: list[str], output_path: Path, *, lmms_model: str = "llava_hf",
                  device: str = "cpu", batch_size: int = 1, limit: int | None = None,
                  include_path: Path | None = None, offline: bool = False) -> Command:
    check_known(lmms_model, LMMS_MODELS, "lmms-eval model")
    model_args = f"pretrained={model},device={device}"
    if lmms_model == "llava_hf":
        model_args += f",device_map={device}"  # stock llava_hf moves the model to "cuda" otherwise
    argv = [sys.executable, "-m", "lmms_eval", "--model", lmms_model, "--model_args", model_args,
            "--tasks", ",".join(tasks), "--batch_size", str(batch_size),
            "--output_path", str(output_path), "--log_samples"]
    if limit is not None:
        argv += ["--limit", str(limit)]
    if include_path is not None:
        argv += ["--include_path", str(include_path)]
    return Command(argv, dict(OFFLINE_ENV) if offline else {})


def _failure_reason(log_tail: list[str]) -> str:
    for line in reversed(log_tail):
        m = re.search(r"Error during evaluation: (.*?)(?:\. Please set `--verbosity.*)?$", line)
        if m:
            return m.group(1).strip()
    for line in reversed(log_tail):  # a traceback's last line, e.g. "ValueError: ..."
        if re.match(r"^\w+(Error|Exception):", line.strip()):
            return line.strip()
    return "no error message; see the log"


def find_results(output_path: Path, since: float = 0.0) -> list[Path]:
    """lmms-eval's `*_results.json` files under `output_path` written after `since`, newest last."""
    found = [p for p in Path(output_path).rglob("*_results.json") if p.stat().st_mtime >= since]
    return sorted(found, key=lambda p: p.stat().st_mtime)


def run_lmms_eval(cmd: Command, tasks: list[str], output_path: Path, log_file: Path) -> Path:
    """Run `cmd`, stream its output (and save it to `log_file`); return the results JSON path."""
    start = time.time() - 1.0
    tail: deque[str] = deque(maxlen=200)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "w") as log, subprocess.Popen(
        cmd.argv, env={**os.environ, **cmd.env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", bufsize=1,
    ) as proc:
        for line in proc.stdout:
            sys.stdout.write(line)
            log.write(line)
            tail.append(line.rstrip("\n").split("\r")[-1])
        rc = proc.wait()
    results = find_results(output_path, since=start)
    if rc != 0 or not results:
        what = f"exit code {rc}" if rc != 0 else "exit code 0 but no results JSON"
        raise EvalFailed(f"lmms-eval failed ({what}): {_failure_reason(list(tail))} [log: {log_file}]")
    got = set(json.loads(results[-1].read_text()).get("results", {}))
    missing = [t for t in tasks if t not in got]
    if missing:
        raise EvalFailed(f"lmms-eval wrote {results[-1]} without task(s) {', '.join(missing)} [log: {log_file}]")
    return results[-1]
