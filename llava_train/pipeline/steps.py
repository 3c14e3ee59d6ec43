"""Step runner for the main job (`clips-llava demo`): run steps as subprocesses, log, time, resume.

Each step is a command plus the outputs it must leave behind. After a step succeeds, its command
and the sha256 of every output file go into `OUT/demo_manifest.json`; a re-run skips a step whose
recorded command is unchanged and whose outputs still hash the same, and none of whose inputs (the
steps it runs after) was redone, so an interrupted or failed demo resumes at its incomplete steps. A
failing step stops the run with its name and log path, once the steps running beside it have ended.

Steps run in list order, each after the one before it, unless a step names the steps it needs
(`after`); then up to `jobs` steps whose needs are done run at once, and the machine's cores are
shared between them (OMP_NUM_THREADS, which torch and the stage scripts' launcher read). On the 2-core
machine the demo was measured on, two stage-2 trainings side by side at one thread each did 1.27x the
work of one at two threads (0.316 s/step each against 0.200 s/step alone): the small models' kernels
do not use two cores fully. Three side by side (the demo's three towers) did 1.10x: more steps than
cores share them by time-slicing. A step keeps the thread count it started with.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from clips_tower.io import atomic_write, sha256_file


class StepFailed(RuntimeError):
    """A demo step exited non-zero or did not leave its outputs behind."""


@dataclass
class Step:
    name: str
    argv: list[str]                      # command line, run from the repository root
    outputs: list[str]                   # files or directories (relative to OUT) that must exist after
    env: dict[str, str] = field(default_factory=dict)
    after: tuple[str, ...] | None = None  # steps whose outputs this one reads; None: the step before it


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


def _needs(steps: list[Step]) -> dict[str, tuple[str, ...]]:
    names = [s.name for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"step names repeat: {names}")
    needs: dict[str, tuple[str, ...]] = {}
    for i, step in enumerate(steps):
        needs[step.name] = (names[i - 1],) if step.after is None and i else tuple(step.after or ())
        unknown = [n for n in needs[step.name] if n not in names[:i]]
        if unknown:  # list order is a valid order: a step only needs steps listed before it
            raise ValueError(f"step {step.name!r} runs after {unknown}, which are not listed before it")
    return needs


def run_steps(steps: list[Step], out: Path, *, fresh: bool = False, echo: bool = True, jobs: int = 1,
              cores: int | None = None) -> dict[str, float]:
    """Run `steps`, up to `jobs` at once; return {step name: seconds} (the recorded time for skipped steps).

    A step is skipped when the manifest shows it complete and none of the steps it needs reran.
    With `jobs` > 1 each step gets `cores // running steps` threads (at least 1) and prints two lines,
    when it starts and when it ends; with one job it prints one line.
    """
    needs = _needs(steps)
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    manifest = Manifest(out / "demo_manifest.json")
    if fresh:
        manifest.forget_from([s.name for s in steps])
    cores = cores or os.cpu_count() or 1
    index = {s.name: i for i, s in enumerate(steps, 1)}

    def head(step: Step) -> str:
        return f"[{index[step.name]}/{len(steps)}] {step.name}"

    times: dict[str, float] = {}
    redone: set[str] = set()
    pending = list(steps)
    running: dict[str, _Running] = {}
    failure: StepFailed | None = None
    one_line = jobs == 1 and not echo  # "[i/N] step: running (log: ...) ... done in 12.3 s"
    stream = jobs == 1 and echo  # copy the one running step's output to the terminal as well

    def report(step: Step, what: str) -> None:
        print(what if one_line else f"{head(step)}: {what}", flush=True)

    while pending or running:
        scan = not failure
        while scan:  # start what is ready; a skipped step can make later ones ready at once
            scan = False
            ready = [s for s in pending if all(n in times for n in needs[s.name])]
            side_by_side = min(jobs, len(running) + len(ready))
            for step in ready:
                if len(running) >= jobs:
                    break
                pending.remove(step)
                if not redone.intersection(needs[step.name]) and manifest.is_complete(step, out):
                    times[step.name] = manifest.data["steps"][step.name]["seconds"]
                    print(f"{head(step)}: complete (manifest hashes match), skipped", flush=True)
                    scan = True
                    continue
                redone.add(step.name)
                log_path = logs / f"{index[step.name]:02d}-{step.name}.log"
                print(f"{head(step)}: running (log: {log_path.relative_to(out)})", end=" ... " if one_line else "\n",
                      flush=True)
                threads = max(1, cores // side_by_side) if jobs > 1 else None  # one job: the launcher's default
                running[step.name] = _Running.start(step, log_path, stream=stream, threads=threads)
        if not running:
            break  # all done, or a failure with nothing left running
        run = running.pop(_wait_any(running, stream=stream))
        step, seconds = run.step, time.perf_counter() - run.t0
        if run.proc.returncode != 0:
            report(step, "failed")
            failure = failure or StepFailed(f"step {step.name!r} failed (exit {run.proc.returncode}) after "
                                            f"{seconds:.1f} s; log: {run.log_path}")
            continue
        missing = [o for o in step.outputs if not (out / o).exists()]
        if missing:
            report(step, f"failed: exited 0 but left no {', '.join(missing)}")
            failure = failure or StepFailed(f"step {step.name!r} left no {', '.join(missing)}; log: {run.log_path}")
            continue
        manifest.record(step, out, seconds)
        times[step.name] = round(seconds, 1)
        report(step, f"done in {seconds:.1f} s")
    if failure:
        raise failure
    return times


@dataclass
class _Running:
    """A started step: its process, start time and open log (closed when the process ends)."""
    step: Step
    proc: subprocess.Popen
    t0: float
    log_path: Path
    log: TextIO

    @classmethod
    def start(cls, step: Step, log_path: Path, *, stream: bool, threads: int | None) -> _Running:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **step.env}
        if threads is not None:
            env["OMP_NUM_THREADS"] = str(threads)
        log = open(log_path, "w")  # noqa: SIM115 -- open while the step runs; closed by `ended`
        log.write(f"$ {' '.join(step.argv)}\n")
        log.flush()
        proc = subprocess.Popen(step.argv, stdout=subprocess.PIPE if stream else log, stderr=subprocess.STDOUT,
                                env=env, text=True)
        return cls(step, proc, time.perf_counter(), log_path, log)

    def ended(self) -> bool:
        if self.proc.poll() is None:
            return False
        self.log.close()
        return True


def _wait_any(running: dict[str, _Running], *, stream: bool) -> str:
    """Wait until one running step ends; return its name. `stream`: copy its output to the terminal too."""
    if stream:  # one job: the only running step
        name, run = next(iter(running.items()))
        assert run.proc.stdout is not None
        for line in run.proc.stdout:
            run.log.write(line)
            run.log.flush()
            sys.stdout.write(f"  {line}" if line.strip() else line)
        run.proc.wait()
    while True:  # (after streaming, the streamed step has ended: it is found at once)
        for name, run in running.items():
            if run.ended():
                return name
        time.sleep(0.2)
