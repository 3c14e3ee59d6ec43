"""Kill-and-resume soak test: `kill -9` a tiny training run at K seeded random moments, resume it
each time, and check that the end result equals an uninterrupted run.

    .venv/bin/python scripts/soak_kill.py --target llava-stage2 --kills 20 --seed 0 --out runs/soak-s2
    .venv/bin/python scripts/soak_kill.py --target clips --kills 20 --seed 0 --out runs/soak-clips
    .venv/bin/python scripts/soak_kill.py --target llava-lora --kills 5 --nproc 2 --out runs/soak-lora

Targets: `llava-stage1` (configs/llava/stage1_tiny.yaml, ZeRO-2, feature cache), `llava-stage2`
(stage2_tiny.yaml, ZeRO-3), `llava-lora` (stage2_lora_tiny.yaml, r 8), `clips` (`clips-llava clips
train` on configs/clips/tiny.yaml). It builds its own tiny inputs in OUT/inputs (or `--inputs DIR`,
reused when complete): the world (`clips-llava synth --preset tiny`), a random-init tower
(`clips-llava tower export` of configs/clips/models/tiny.json) and a tiny LM (`clips-llava lm init`).

1. Reference: the run once, uninterrupted (OUT/reference); its timeline (start-up, step time,
   checkpoint and final-save durations, watched by polling the output dir) sizes the kill delays.
2. Soak (OUT/soak): each attempt is launched in its own process group with
   `--resume_from_checkpoint true` (clips: `--resume`) and, for K attempts, killed with SIGKILL to
   the whole group and to every descendant's group (torchrun puts each worker in a session of its
   own; a kill of the launcher's group alone leaves the workers training). Each kill draws a
   seeded mode: `startup` (a random time before the first step), `step` (a random time within the
   next few steps), `checkpoint` (a random moment while a checkpoint is being written:
   `.tmp-checkpoint-*` / `checkpoints/.tmp-step-*` / `checkpoints/.old-step-*` exists) or `final`
   (while the final model is being saved); the final-save kills come last. The phase it actually
   landed in is read from the output dir and log just before the kill. An attempt that finishes
   before its kill counts as completed; later kills then hit re-runs (which resume from the last
   checkpoint, train nothing and redo the final save). `--steps` defaults to max(8, K).
   After each kill the final model must be valid or absent (its manifest complete) and every
   `checkpoint-N` complete. Then one last attempt runs to the end.
3. Compare: losses per step (run_report.json; clips: metrics.jsonl) and every tensor of the final
   weights (LLaVA: the model/adapter/projector safetensors; clips: export/open_clip_model.safetensors).

Prints one summary line (K, kills per phase, max |loss diff|, max |weight diff|), writes
OUT/soak_report.json, and exits 1 on any mismatch or failed attempt.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clips_tower.distributed import free_port  # after the path insert

LLAVA_CONFIGS = {"llava-stage1": ("stage1_tiny.yaml", "stage1.json", []),
                 "llava-stage2": ("stage2_tiny.yaml", "stage2.json", []),
                 "llava-lora": ("stage2_lora_tiny.yaml", "stage2.json", ["--lora_r", "8", "--lora_alpha", "16"])}
TARGETS = [*LLAVA_CONFIGS, "clips"]
MODES = {"startup": 0.15, "step": 0.4, "checkpoint": 0.3, "final": 0.15}
POLL = 0.005


def env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                TOKENIZERS_PARALLELISM="false", DS_ACCELERATOR="cpu", OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))


def cli(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "llava_train.pipeline.cli", *args], cwd=REPO, env=env(),
                       capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise SystemExit(f"clips-llava {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def build_inputs(root: Path, target: str) -> dict:
    """The tiny world, tower and LM (each built once; a partial one is rebuilt)."""
    root.mkdir(parents=True, exist_ok=True)
    world, tower, lm = root / "world", root / "tower", root / "lm"
    if not (world / "MANIFEST.json").is_file():
        shutil.rmtree(world, ignore_errors=True)
        cli("synth", "--out", str(world), "--preset", "tiny", "--seed", "0")
    if target != "clips":
        if not (tower / "tower_info.json").is_file() or not (tower / "config.json").is_file():
            shutil.rmtree(tower, ignore_errors=True)
            cli("tower", "export", "--model", str(REPO / "configs/clips/models/tiny.json"), "--random-init",
                "--out", str(tower))
        if not (lm / "model.safetensors").is_file() or not (lm / "config.json").is_file():
            shutil.rmtree(lm, ignore_errors=True)
            cli("lm", "init", "--preset", "tiny", "--data", str(world), "--out", str(lm))
    return {"world": world, "tower": tower, "lm": lm}


def command(args, inputs: dict, out: Path, resume: bool) -> list[str]:
    py = [sys.executable]
    if args.target == "clips":
        cfg = write_clips_config(args, out.parent)
        rest = ["--config", str(cfg), "--data", str(inputs["world"]), "--out", str(out)] + (["--resume"] * resume)
        if args.nproc > 1:
            return py + ["-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
                         f"--master_port={free_port()}", "-m", "clips_tower.train", *rest]
        return py + ["-m", "llava_train.pipeline.cli", "clips", "train", *rest]
    config, data, extra = LLAVA_CONFIGS[args.target]
    w = inputs["world"] / "llava"
    rest = ["--config", str(REPO / "configs/llava" / config), "--model_name_or_path", str(inputs["lm"]),
            "--vision_tower", str(inputs["tower"]), "--data_path", str(w / data), "--image_folder", str(w / "images"),
            "--output_dir", str(out), "--max_steps", str(args.steps), "--save_strategy", "steps",
            "--save_steps", str(args.save_steps), "--save_total_limit", str(args.save_total_limit),
            "--logging_steps", "1", *extra] + (["--resume_from_checkpoint", "true"] * resume)
    if args.nproc > 1:
        return py + ["-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}", f"--master_port={free_port()}",
                     "-m", "llava_train.train", "--per_device_train_batch_size", str(4 // args.nproc), *rest]
    return py + ["-m", "llava_train.train", *rest]


def write_clips_config(args, where: Path) -> Path:
    import yaml

    path = where / "clips-soak.yaml"
    if not path.is_file():
        cfg = yaml.safe_load((REPO / "configs/clips/tiny.yaml").read_text())
        cfg["model"] = str((REPO / "configs/clips" / cfg["model"]).resolve())
        cfg["optim"]["steps"] = args.steps
        cfg["run"].update(checkpoint_every=args.save_steps, keep_checkpoints=args.save_total_limit)
        path.write_text(yaml.safe_dump(cfg))
    return path


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _signal(fn, target: int) -> None:
    try:
        fn(target, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent, e.g. an orphan under a container's init, is dead)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Watch:
    """One attempt: the process (own session), its log, and what its output dir shows."""

    def __init__(self, cmd: list[str], out: Path, log: Path, clips: bool):
        self.out, self.log_path, self.clips, self.t0, self.wall0 = out, log, clips, time.monotonic(), time.time()
        self.leftovers: set[Path] = set()
        self.leftovers = set().union(*self._entries())
        self.fh = open(log, "wb")  # noqa: SIM115 - open for the attempt's lifetime, closed in close()
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=self.fh, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.text, self._pos = "", 0
        self.train_started = self.train_done = self.finished_report = None

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def poll_log(self) -> None:
        with open(self.log_path, "rb") as fh:
            fh.seek(self._pos)
            raw = fh.read()
        self._pos += len(raw)
        chunk = raw.decode("utf-8", "replace")
        self.text += chunk
        started, done = ("CLIPS pretraining:", "exported open_clip") if self.clips else ("'loss':", "'train_runtime':")
        if self.train_started is None and started in chunk:
            self.train_started = self.elapsed()
        if self.train_done is None and done in chunk:
            self.train_done = self.elapsed()
        if self.finished_report is None and ("during training (of" in chunk or "exported open_clip" in chunk):
            self.finished_report = self.elapsed()

    def _entries(self) -> tuple[set[Path], set[Path]]:
        """Paths now showing a checkpoint write / a final-model write in progress."""
        try:
            names = os.listdir(self.out)
        except FileNotFoundError:
            return set(), set()
        if self.clips:
            try:
                ck = os.listdir(self.out / "checkpoints")
            except FileNotFoundError:
                ck = []
            return ({self.out / "checkpoints" / n for n in ck if n.startswith((".tmp-step-", ".old-step-"))},
                    {self.out / n for n in names if n.startswith((".tmp-export", ".old-export"))})
        ckpts = sorted((int(n.split("-")[1]), n) for n in names if n.startswith("checkpoint-") and n[11:].isdigit())
        writing = {self.out / n for n in names if n.startswith((".tmp-checkpoint-", ".old-checkpoint-"))}
        if ckpts and not (self.out / ckpts[-1][1] / "trainer_state.json").exists():  # a stock in-place save
            writing.add(self.out / ckpts[-1][1])
        return writing, {self.out / n for n in (".final.tmp", ".final.ready") if n in names}

    def _active(self, paths: set[Path]) -> bool:
        """Leftovers of an earlier attempt (there at launch, untouched since) do not count."""
        for p in paths:
            try:
                fresh = p.stat().st_mtime >= self.wall0
            except FileNotFoundError:
                continue
            if p not in self.leftovers or fresh:
                return True
        return False

    def staging(self) -> tuple[bool, bool]:
        """(a checkpoint is being written, the final model is being written) by this attempt."""
        ckpt, final = self._entries()
        self.leftovers &= ckpt | final  # one that vanished and comes back is this attempt's
        return self._active(ckpt), self._active(final)

    def phase(self) -> str:
        self.poll_log()
        ckpt, final = self.staging()
        if ckpt:
            return "checkpoint"
        if final:
            return "final"
        if self.finished_report is not None:
            return "teardown"
        if self.train_done is not None:
            return "final"  # after the last step: gathering and writing the final model
        return "step" if self.train_started is not None else "startup"

    def kill(self) -> None:
        """SIGKILL the attempt's whole process tree at once: its process group and, since torchrun
        starts each worker in a session of its own, every descendant's group too."""
        try:
            os.killpg(self.proc.pid, signal.SIGSTOP)  # freeze the launcher: it spawns nothing more
        except ProcessLookupError:
            pass
        tree = [self.proc.pid, *descendants(self.proc.pid)]
        for pgid in {_pgid(p) for p in tree} - {None}:
            _signal(os.killpg, pgid)
        for pid in tree:
            _signal(os.kill, pid)
        self.proc.wait()
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        if any(_alive(p) for p in tree):
            raise SystemExit(f"processes {[p for p in tree if _alive(p)]} survived SIGKILL")
        self.close()

    def close(self) -> None:
        if not self.fh.closed:
            self.fh.close()
        self.poll_log()


def run_reference(cmd, out: Path, logs: Path, clips: bool, timeout: float) -> dict:
    """The uninterrupted run, timed: start-up, steps, checkpoint and final-save windows."""
    w = Watch(cmd, out, logs / "reference.log", clips)
    ckpt_windows, final_windows, open_ckpt, open_final = [], [], None, None
    while w.proc.poll() is None:
        if w.elapsed() > timeout:
            w.kill()
            raise SystemExit(f"reference run timed out; log {logs / 'reference.log'}")
        w.poll_log()
        ckpt, final = w.staging()
        now = w.elapsed()
        if ckpt and open_ckpt is None:
            open_ckpt = now
        if not ckpt and open_ckpt is not None:
            ckpt_windows.append(now - open_ckpt)
            open_ckpt = None
        if final and open_final is None:
            open_final = now
        if not final and open_final is not None:
            final_windows.append(now - open_final)
            open_final = None
        time.sleep(POLL)
    w.close()
    if w.proc.returncode != 0:
        raise SystemExit(f"reference run failed ({w.proc.returncode}):\n{w.text[-4000:]}")
    total = w.elapsed()
    start = w.train_started or 0.5 * total
    end = w.train_done or total
    return {"total_s": total, "startup_s": start, "train_s": max(end - start, 0.05),
            "checkpoint_s": sorted(ckpt_windows)[len(ckpt_windows) // 2] if ckpt_windows else 0.05,
            "final_s": max(final_windows) if final_windows else 0.1, "checkpoints_seen": len(ckpt_windows)}


def final_dir_state(out: Path, clips: bool) -> str:
    """'valid', 'absent' or a description of what is wrong (mixed / partial under the final name)."""
    from llava_train.checkpoints import (
        FINAL_MANIFEST,
        LOAD_MARKERS,
        checkpoint_dirs,
        checkpoint_problem,
    )

    if clips:
        exp = out / "export"
        if not exp.exists():
            return "absent"
        missing = [n for n in ("open_clip_config.json", "open_clip_model.safetensors") if not (exp / n).is_file()]
        return f"export/ lacks {missing}" if missing else "valid"
    bad = [f"{p.name}: {why}" for _, p in checkpoint_dirs(out) if (why := checkpoint_problem(p))]
    if bad:
        return "incomplete checkpoint under its final name: " + "; ".join(bad)
    if not any((out / m).is_file() for m in LOAD_MARKERS):
        return "absent"
    manifest = out / FINAL_MANIFEST
    if not manifest.is_file():
        return "final model without its manifest"
    missing = [n for n in json.loads(manifest.read_text())["files"] if not (out / n).exists()]
    return f"final model lacks {missing}" if missing else "valid"


def soak(args, cmd_for, out: Path, logs: Path, ref: dict, rng: random.Random) -> list[dict]:
    clips = args.target == "clips"
    step_s = ref["train_s"] / max(args.steps - 1, 1)
    # K (mode, moment) draws; the final-save kills go last: after the first one training is over
    # and every later attempt is a re-run (start-up + final save), where a step kill cannot land
    plan = [(rng.choices(list(MODES), weights=list(MODES.values()))[0], rng.random()) for _ in range(args.kills)]
    plan = [d for d in plan if d[0] != "final"] + [d for d in plan if d[0] == "final"]
    kills, attempt = [], 0
    while len(kills) < args.kills:
        attempt += 1
        mode, u = plan[len(kills)]  # u: the random moment within the mode's window
        w = Watch(cmd_for(True), out, logs / f"attempt-{attempt:03d}.log", clips)
        deadline = w.elapsed() + args.timeout
        kill_at, phase = None, None
        if mode == "startup":
            kill_at = 0.2 + u * max(ref["startup_s"] - 0.2, 0.1)
        while w.proc.poll() is None and w.elapsed() < deadline:
            w.poll_log()
            ckpt, final = w.staging()
            now = w.elapsed()
            if kill_at is None:
                if mode == "step" and (w.train_started is not None or final or w.train_done is not None):
                    kill_at = now + u * step_s * (args.save_steps + 1)
                elif mode == "checkpoint" and ckpt:
                    kill_at = now + u * ref["checkpoint_s"] * 1.2
                elif mode in ("checkpoint", "final") and (final or w.train_done is not None):
                    kill_at = now + u * ref["final_s"] * 1.2  # no checkpoint left to write: the final save
            if kill_at is not None and now >= kill_at:
                phase = w.phase()
                w.kill()
                break
            time.sleep(POLL)
        if phase is None:
            w.close()
            if w.proc.returncode is None:
                w.kill()
                raise SystemExit(f"attempt {attempt} hung (> {args.timeout} s); log {w.log_path}")
            if w.proc.returncode != 0:
                raise SystemExit(f"attempt {attempt} failed ({w.proc.returncode}) without being killed:\n"
                                 f"{w.text[-4000:]}")
            print(f"  attempt {attempt}: completed before its {mode} kill ({w.elapsed():.1f} s)", flush=True)
            continue
        state = final_dir_state(out, clips)
        kills.append({"attempt": attempt, "mode": mode, "phase": phase, "at_s": round(w.elapsed(), 3),
                      "final_dir": state})
        print(f"  kill {len(kills)}/{args.kills} (attempt {attempt}): mode {mode}, landed in {phase} at "
              f"{w.elapsed():.2f} s; final model {state}", flush=True)
        if state not in ("valid", "absent"):
            raise SystemExit(f"after kill {len(kills)}: {state}")
    return kills


def losses(out: Path, clips: bool) -> dict[int, float]:
    if clips:
        rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        return {r["step"]: r["loss"] for r in rows}
    return {int(s): float(v) for s, v in json.loads((out / "run_report.json").read_text())["losses"]}


def weights(out: Path, clips: bool) -> dict:
    from safetensors.torch import load_file

    files = [out / "export/open_clip_model.safetensors"] if clips else sorted(out.glob("*.safetensors"))
    state = {}
    for f in files:
        state.update({f"{f.name}:{k}": v for k, v in load_file(str(f)).items()})
    return state


def compare(ref_out: Path, soak_out: Path, clips: bool) -> dict:
    a, b = losses(ref_out, clips), losses(soak_out, clips)
    wa, wb = weights(ref_out, clips), weights(soak_out, clips)
    problems = []
    if set(a) != set(b):
        problems.append(f"logged steps differ: reference {sorted(a)}, soak {sorted(b)}")
    if set(wa) != set(wb) or not wa:
        problems.append(f"weight tensors differ: {sorted(set(wa) ^ set(wb))[:10]} (reference has {len(wa)})")
    loss_diff = max((abs(a[s] - b[s]) for s in set(a) & set(b)), default=float("nan"))
    weight_diff = 0.0
    for k in set(wa) & set(wb):
        if wa[k].shape != wb[k].shape:
            problems.append(f"{k}: shape {tuple(wa[k].shape)} vs {tuple(wb[k].shape)}")
            continue
        if wa[k].numel():
            weight_diff = max(weight_diff, (wa[k].double() - wb[k].double()).abs().max().item())
    return {"steps": len(a), "tensors": len(wa), "max_loss_diff": loss_diff, "max_weight_diff": weight_diff,
            "problems": problems}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=TARGETS, default="llava-stage2")
    p.add_argument("--kills", type=int, default=5, help="K: how many attempts are killed")
    p.add_argument("--seed", type=int, default=0, help="seeds the kill modes and moments")
    p.add_argument("--out", required=True, help="work dir (inputs/, reference/, soak/, logs/, soak_report.json)")
    p.add_argument("--inputs", help="reuse tiny inputs here (built when missing); default OUT/inputs")
    p.add_argument("--steps", type=int, help="training steps (max_steps / optim.steps; default max(8, K))")
    p.add_argument("--save-steps", type=int, default=2, help="checkpoint every N steps")
    p.add_argument("--save-total-limit", type=int, default=2, help="save_total_limit / keep_checkpoints")
    p.add_argument("--nproc", type=int, default=1, help="processes (torchrun); the global batch stays 4 for LLaVA")
    p.add_argument("--loss-tol", type=float, default=1e-6)
    p.add_argument("--weight-tol", type=float, default=1e-6)
    p.add_argument("--timeout", type=float, default=600, help="seconds one attempt may take")
    args = p.parse_args(argv)
    args.steps = args.steps or max(8, args.kills)
    if args.kills < 0 or args.steps < 1 or args.save_steps < 1:
        p.error("--kills >= 0, --steps >= 1 and --save-steps >= 1")
    t_start = time.monotonic()
    root = Path(args.out).resolve()
    clips = args.target == "clips"
    logs, ref_out, soak_out = root / "logs", root / "reference", root / "soak"
    for d in (logs, ref_out, soak_out):
        shutil.rmtree(d, ignore_errors=True)
    logs.mkdir(parents=True)
    (root / "clips-soak.yaml").unlink(missing_ok=True)
    inputs = build_inputs(Path(args.inputs).resolve() if args.inputs else root / "inputs", args.target)

    print(f"soak_kill: {args.target}, {args.steps} steps, checkpoint every {args.save_steps}, "
          f"{args.nproc} process(es); reference run ...", flush=True)
    ref = run_reference(command(args, inputs, ref_out, resume=False), ref_out, logs, clips, args.timeout)
    print(f"  reference: {ref['total_s']:.1f} s (start-up {ref['startup_s']:.1f} s, steps {ref['train_s']:.1f} s, "
          f"checkpoint write ~{ref['checkpoint_s']:.3f} s, final save ~{ref['final_s']:.3f} s)", flush=True)
    t_soak = time.monotonic()
    kills = soak(args, lambda resume: command(args, inputs, soak_out, resume), soak_out, logs, ref,
                 random.Random(args.seed))
    last = Watch(command(args, inputs, soak_out, resume=True), soak_out, logs / "final-attempt.log", clips)
    try:
        last.proc.wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        last.kill()
        raise SystemExit("the final attempt hung")
    last.close()
    if last.proc.returncode != 0:
        print(last.text[-4000:], file=sys.stderr)
        print("soak_kill: FAIL: the final resumed attempt failed", file=sys.stderr)
        return 1
    soak_s = time.monotonic() - t_soak
    result = compare(ref_out, soak_out, clips)
    state = final_dir_state(soak_out, clips)
    if state != "valid":
        result["problems"].append(f"final model after the soak: {state}")
    if not result["max_loss_diff"] <= args.loss_tol:
        result["problems"].append(f"max |loss diff| {result['max_loss_diff']:.3g} > {args.loss_tol:g}")
    if not result["max_weight_diff"] <= args.weight_tol:
        result["problems"].append(f"max |weight diff| {result['max_weight_diff']:.3g} > {args.weight_tol:g}")
    phases = {ph: sum(k["phase"] == ph for k in kills) for ph in ("startup", "step", "checkpoint", "final",
                                                                   "teardown")}
    report = {"target": args.target, "kills": len(kills), "seed": args.seed, "steps": args.steps,
              "nproc": args.nproc, "phases": phases, "reference": ref, "kill_log": kills, **result,
              "soak_s": round(soak_s, 1), "s_per_kill": round(soak_s / max(len(kills), 1), 2),
              "total_s": round(time.monotonic() - t_start, 1)}
    (root / "soak_report.json").write_text(json.dumps(report, indent=1) + "\n")
    ok = not result["problems"]
    print(f"soak_kill: target={args.target} K={len(kills)} seed={args.seed} phases: "
          + " ".join(f"{k}={v}" for k, v in phases.items())
          + f" | max|loss diff|={result['max_loss_diff']:.3g} over {result['steps']} steps"
          f" | max|weight diff|={result['max_weight_diff']:.3g} over {result['tensors']} tensors"
          f" | {soak_s:.0f} s, {report['s_per_kill']} s/kill | {'OK' if ok else 'FAIL'}", flush=True)
    for prob in result["problems"]:
        print(f"soak_kill: FAIL: {prob}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
