"""Step runner for the main job (`clips-llava demo`): run steps as subprocesses, log, time, resume.

Each step is a command plus the outputs it must leave behind. After a step succeeds, its command
and the sha256 of every output file go into `OUT/demo_manifest.json`; a re-run skips a step whose
recorded command is unchanged and whose outputs still hash the same, so an interrupted or failed
demo resumes at the first incomplete step. A failing step stops the run with its name and log path.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from clips_tower.io import atomic_write, sha256_file


class StepFailed(RuntimeError):
    """A demo step exited non-zero or did not leave its outputs behind."""


@dataclass
class Step:
    name: str
    argv: list[str]                      # command line, run from the repository root
    outputs: list[str]                   # files or directories (relative to OUT) that must exist after
    env: dict[str, str] = field(default_factory=dict)


def _hash_path(path: Path) -> dict[str, str]:
    """sha256 of a file, or of every file under a directory (sorted), keyed by relative path."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(f): sha256_file(f) for f in files}


class Manifest:
    """`demo_manifest.json`: per step, the command, output hashes and wall time; written atomically."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict = json.loads(path.read_text()) if path.exists() else {"steps": {}}

    def save(self) -> None:
        atomic_write(self.path, json.dumps(self.data, indent=2, sort_keys=True))

    def is_complete(self, step: Step, out: Path) -> bool:
        rec = self.data["steps"].get(step.name)
        if not rec or rec.get("argv") != step.argv:
            return False
        hashes: dict[str, str] = {}
        for o in step.outputs:
            p = out / o
            if not p.exists():
                return False
            hashes.update(_hash_path(p))
        return hashes == rec.get("outputs")

    def record(self, step: Step, out: Path, seconds: float) -> None:
        hashes: dict[str, str] = {}
        for o in step.outputs:
            hashes.update(_hash_path(out / o))
        self.data["steps"][step.name] = {"argv": step.argv, "outputs": hashes, "seconds": round(seconds, 1)}
        self.save()

    def forget_from(self, names: list[str]) -> None:
        for n in names:
            self.data["steps"].pop(n, None)
        self.save()


def run_steps(steps: list[Step], out: Path, *, fresh: bool = False, echo: bool = True) -> dict[str, float]:
    """Run `steps` in order; return {step name: seconds} (0.0 for skipped steps read from the manifest)."""
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    manifest = Manifest(out / "demo_manifest.json")
    if fresh:
        manifest.forget_from([s.name for s in steps])
    times: dict[str, float] = {}
    redo = False  # once a step reruns, every later step reruns too: its inputs changed
    for i, step in enumerate(steps, 1):
        head = f"[{i}/{len(steps)}] {step.name}"
        if not redo and manifest.is_complete(step, out):
            rec = manifest.data["steps"][step.name]
            times[step.name] = rec["seconds"]
            print(f"{head}: complete (manifest hashes match), skipped", flush=True)
            continue
        redo = True
        log_path = logs / f"{i:02d}-{step.name}.log"
        print(f"{head}: running (log: {log_path.relative_to(out)})", end="\n" if echo else " ... ", flush=True)
        t0 = time.perf_counter()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **step.env}
        with open(log_path, "w") as log:
            log.write(f"$ {' '.join(step.argv)}\n")
            proc = subprocess.Popen(step.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if echo:
                    sys.stdout.write(f"  {line}" if line.strip() else line)
            rc = proc.wait()
        seconds = time.perf_counter() - t0
        if rc != 0:
            if not echo:
                print("failed", flush=True)
            raise StepFailed(f"step {step.name!r} failed (exit {rc}) after {seconds:.1f} s; log: {log_path}")
        missing = [o for o in step.outputs if not (out / o).exists()]
        if missing:
            raise StepFailed(f"step {step.name!r} left no {', '.join(missing)}; log: {log_path}")
        manifest.record(step, out, seconds)
        times[step.name] = round(seconds, 1)
        print(f"{head}: done in {seconds:.1f} s" if echo else f"done in {seconds:.1f} s", flush=True)
    return times
