"""Crash-safe LLaVA checkpoints and final saves: a `kill -9` at any moment leaves a resumable run.

    class LlavaTrainer(AtomicCheckpoints, Trainer): ...        # checkpoint-N appears only complete
    resume = resolve_resume("true", output_dir)                # newest *complete* checkpoint, or None
    trainer.save_final(output_dir, before_publish=export_fn)   # final model: valid or absent, never mixed

Checkpoints. HF Trainer writes `checkpoint-N/` in place, and `--resume_from_checkpoint true` takes
the highest-numbered one, complete or not. `AtomicCheckpoints._save_checkpoint` lets the stock code
write into `OUTPUT_DIR/.tmp-checkpoint-N/checkpoint-N/` instead (every rank writes its own files
there: model, DeepSpeed ZeRO shards, optimizer, rng_state_R), then after a barrier the process
that owns the directory (`args.should_save`: global rank 0, or each node's local main with
`save_on_each_node`) writes `checkpoint_complete.json` (every file with its size), fsyncs, and
renames the directory to `OUTPUT_DIR/checkpoint-N` (an existing one is first renamed to
`.old-checkpoint-N`). So `checkpoint-N` only ever appears complete. The stock rotation runs inside
the staging directory, where it finds nothing to delete; `save_total_limit` is then applied here,
counting and deleting only complete checkpoints (oldest step first; the one just written and
`best_model_checkpoint`, whose staged path is rewritten to the final one, are kept), so an
incomplete directory can never push a complete one out. Leftover `.tmp-*`/`.old-*` directories
of a killed save are removed at the next save.

Resuming. `resolve_resume` maps `true`/`last` to the newest complete `checkpoint-N`: one with a
valid `checkpoint_complete.json`, or (written by stock HF or an older version of this project) a
parseable `trainer_state.json` for step N plus model weights. Incomplete ones are skipped with a
warning; with several processes the ranks agree on the newest checkpoint complete on all of them;
none at all starts from step 0 (with a warning) instead of failing, so a job killed before its
first checkpoint can be relaunched with the same command. An explicit path must be complete.
Resumed at max_steps (killed during the final save), training is skipped: the stock loop would
train one step past max_steps on every such re-run.

Final model. The final stock Llava (or LoRA adapter) shares OUTPUT_DIR with `init/`,
`checkpoint-N/` and `run_report.json`, so it cannot be swapped in by one directory rename. Instead:
(1) `save_model` writes it into `OUTPUT_DIR/.final.tmp/` (plus `before_publish` extras such as
`mm_projector.safetensors`), renamed to `.final.ready/` once complete and fsynced; (2) the old
final's load markers (`config.json`, `adapter_config.json`) are deleted first: from then on the
old model is absent, not loadable; (3) every other file of the old final is deleted (those named
in `.final_files.json`, the manifest of the previous publish, plus the new file names and the
usual weight-file patterns for directories from before manifests existed), so no stale shard,
index or projector can survive next to new files; (4) the new manifest is written, the new files
are moved in with the load markers last. At every moment the directory therefore holds either a
complete model (markers present, all files from one save) or no model (markers absent, files of
at most one save): valid or absent, never mixed. Writing config.json last alone would not do:
files of the previous run that the new save does not overwrite would stay mixed in. A crash
leaves no model until the relaunch, which redoes the final save from the last checkpoint.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from clips_tower.distributed import DEEPSPEED_LATEST, common_steps
from clips_tower.io import atomic_write, fsync_path, fsync_tree, remove, replace_dir, temp_leftovers

log = logging.getLogger(__name__)

PREFIX = "checkpoint"
STAGING_PREFIX = ".tmp-checkpoint-"
OLD_PREFIX = ".old-checkpoint-"
MARKER = "checkpoint_complete.json"
TRAINER_STATE = "trainer_state.json"
FINAL_STAGING, FINAL_READY, FINAL_MANIFEST = ".final.tmp", ".final.ready", ".final_files.json"
LOAD_MARKERS = ("config.json", "adapter_config.json")  # without these, from_pretrained finds no model
# Weight files of a final save from before manifests existed (deleted with the old final).
LEGACY_FINAL = re.compile(r"^(config\.json|adapter_config\.json|generation_config\.json|model(-\d+-of-\d+)?"
                          r"\.safetensors|model\.safetensors\.index\.json|pytorch_model(-\d+-of-\d+)?\.bin|"
                          r"pytorch_model\.bin\.index\.json|adapter_model\.(safetensors|bin)|"
                          r"mm_projector\.safetensors)$")
NO_RESUME = ("", "false", "no", "none")
_CKPT = re.compile(rf"^{PREFIX}-(\d+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json",
            "adapter_model.safetensors", "adapter_model.bin")


# ---- checkpoints ----

def checkpoint_dirs(run_dir: str | Path) -> list[tuple[int, Path]]:
    """`checkpoint-N` directories in `run_dir` as (N, path), oldest step first; complete or not."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _CKPT.match(p.name)) and p.is_dir()]
    return sorted(found)


def checkpoint_problem(path: str | Path) -> str | None:
    """Why `path` is not a complete checkpoint (None when it is)."""
    path = Path(path)
    m = _CKPT.match(path.name)
    if not path.is_dir():
        return "not a directory"
    marker = path / MARKER
    if marker.is_file():
        try:
            info = json.loads(marker.read_text())
            files = info["files"]
        except (ValueError, KeyError, TypeError):
            return f"unreadable {MARKER}"
        for rel, size in files.items():
            f = path / rel
            if not f.is_file():
                return f"missing {rel}"
            if f.stat().st_size != size:
                return f"{rel} has {f.stat().st_size} bytes, expected {size}"
        return None
    # No marker: written by stock HF or an older version; trainer_state.json is its last file.
    try:
        state = json.loads((path / TRAINER_STATE).read_text())
    except FileNotFoundError:
        return f"no {TRAINER_STATE}"
    except ValueError:
        return f"unreadable {TRAINER_STATE}"
    if m and state.get("global_step") != int(m.group(1)):
        return f"{TRAINER_STATE} is for step {state.get('global_step')}"
    if not any((path / w).is_file() for w in _WEIGHTS) and not (path / DEEPSPEED_LATEST).is_file():
        return "no model weights"
    return None


def complete_checkpoints(run_dir: str | Path, warn: bool = True) -> list[tuple[int, Path]]:
    """The complete `checkpoint-N` in `run_dir`, oldest first; incomplete ones are logged and skipped."""
    out = []
    for step, path in checkpoint_dirs(run_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            out.append((step, path))
        elif warn:
            log.warning("skipping incomplete checkpoint %s (%s)", path, problem)
    return out


def resolve_resume(value, run_dir: str | Path, verbose: bool = True) -> str | None:
    """`--resume_from_checkpoint` as the path to load: true/last -> newest complete checkpoint (None
    when there is none: start from step 0); a path is checked; empty/false/None -> None."""
    if value is None or value is False or isinstance(value, str) and value.strip().lower() in NO_RESUME:
        return None
    if value is True or isinstance(value, str) and value.strip().lower() in ("true", "last"):
        complete = complete_checkpoints(run_dir, warn=verbose)
        steps = common_steps([s for s, _ in complete])  # complete on every rank
        if not steps:
            if verbose:
                log.warning("--resume_from_checkpoint %s: no complete checkpoint in %s; starting from step 0",
                            value, run_dir)
            return None
        path = Path(run_dir) / f"{PREFIX}-{steps[-1]}"
        if verbose:
            log.info("resuming from %s", path)
        return str(path)
    problem = checkpoint_problem(value)
    if problem is not None:
        raise ValueError(f"--resume_from_checkpoint {value}: not a complete checkpoint ({problem}); "
                         f"use `true` for the newest complete one")
    return str(value)


def clean_staging(run_dir: str | Path) -> None:
    """Remove what a killed checkpoint save left behind (`.tmp-checkpoint-*`, `.old-checkpoint-*`)."""
    run_dir = Path(run_dir)
    if run_dir.is_dir():
        for p in run_dir.iterdir():
            if p.name.startswith((STAGING_PREFIX, OLD_PREFIX)):
                remove(p)


def publish_checkpoint(staged: str | Path, final: str | Path, world_size: int = 1) -> Path:
    """Mark a fully written `staged` checkpoint complete and rename it to `final` (one rename)."""
    staged, final = Path(staged), Path(final)
    files = {str(p.relative_to(staged)): p.stat().st_size for p in sorted(staged.rglob("*")) if p.is_file()}
    m = _CKPT.match(final.name)
    atomic_write(staged / MARKER, json.dumps({"step": int(m.group(1)) if m else None, "world_size": world_size,
                                              "files": files}, indent=1))
    # an existing `final` (the same step saved again: resumed from an earlier checkpoint, or incomplete)
    # waits as `.old-checkpoint-N`, which `clean_staging` finds after a kill
    replace_dir(staged, final, old=final.with_name(OLD_PREFIX + final.name.split("-", 1)[1]))
    if staged.parent.name.startswith(STAGING_PREFIX):
        shutil.rmtree(staged.parent, ignore_errors=True)
    return final


def rotate_complete(run_dir: str | Path, limit: int | None, keep: set) -> list[Path]:
    """`save_total_limit` over complete checkpoints only: delete the oldest beyond `limit`, never one
    in `keep` (the newest, the best). Incomplete directories are neither counted nor deleted."""
    if not limit or limit <= 0:
        return []
    keep = {Path(k).resolve() for k in keep if k}
    complete = [p for _, p in complete_checkpoints(run_dir, warn=False)]
    deleted = []
    for path in complete:
        if len(complete) - len(deleted) <= max(limit, len(keep)):
            break
        if path.resolve() not in keep:
            log.info("deleting older checkpoint %s (save_total_limit %d)", path, limit)
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(path)
    return deleted


class AtomicCheckpoints:
    """HF Trainer mixin (put it before `Trainer`): checkpoints are staged and renamed when complete,
    rotation counts complete checkpoints only, and `save_final` publishes the final model safely."""

    _checkpoint_staging: str | None = None

    def _get_output_dir(self, trial) -> str:
        return self._checkpoint_staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = Path(super()._get_output_dir(trial))
        name = f"{PREFIX}-{self.state.global_step}"
        parent = run_dir / f"{STAGING_PREFIX}{self.state.global_step}"
        if self.args.should_save:
            clean_staging(run_dir)
        self.accelerator.wait_for_everyone()  # nobody writes into a directory being cleaned
        self._checkpoint_staging = str(parent)
        try:
            super()._save_checkpoint(model, trial)  # stock save (and its rotation) inside the staging dir
        finally:
            self._checkpoint_staging = None
        staged, final = parent / name, run_dir / name
        best = self.state.best_model_checkpoint
        if best and Path(best).parent == parent:
            self.state.best_model_checkpoint = best = str(run_dir / Path(best).name)
            if self.args.should_save:
                self.state.save_to_json(str(staged / TRAINER_STATE))
        self.accelerator.wait_for_everyone()  # every rank's shard, optimizer and rng state are written
        if self.args.should_save:
            publish_checkpoint(staged, final, world_size=self.args.world_size)
            rotate_complete(run_dir, self.args.save_total_limit, keep={final, best})
        self.accelerator.wait_for_everyone()  # the checkpoint exists for everyone once this returns

    def _run_epoch(self, *args, **kwargs):
        """Nothing to train once resumed at max_steps (killed during the final save): the stock loop
        would run one more step past max_steps (and save checkpoint-(max_steps+1)) on every re-run."""
        if 0 < self.state.max_steps <= self.state.global_step:
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)

    def save_final(self, output_dir: str | Path, before_publish=None) -> Path:
        """save_model into OUTPUT_DIR/.final.tmp, `before_publish(staged_dir)` on the saving process
        (e.g. the projector export), then `publish_final` (see the module docstring)."""
        output_dir = Path(output_dir)
        staged = output_dir / FINAL_STAGING
        if self.args.should_save:  # leftovers of killed saves (no checkpoint save is in flight now)
            clean_staging(output_dir)
            for leftover in (staged, output_dir / FINAL_READY, *temp_leftovers(output_dir / FINAL_MANIFEST)):
                remove(leftover)
        self.accelerator.wait_for_everyone()
        self.save_model(str(staged))  # every rank: ZeRO-3 gathers the full 16-bit weights here
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            if before_publish is not None:
                before_publish(staged)
            publish_final(staged, output_dir)
        self.accelerator.wait_for_everyone()
        return output_dir


def _old_final_names(output_dir: Path, new_names: list[str]) -> set[str]:
    names = set(new_names)
    manifest = output_dir / FINAL_MANIFEST
    if manifest.is_file():
        try:
            names |= set(json.loads(manifest.read_text())["files"])
        except (ValueError, KeyError, TypeError):
            log.warning("%s is unreadable; deleting the usual weight files of the old final model", manifest)
    names |= {p.name for p in output_dir.iterdir() if LEGACY_FINAL.match(p.name)}
    # never anything but plain top-level names, never the run's other outputs
    return {n for n in names if n and "/" not in n and n not in (".", "..", "init", "run_report.json",
                                                                     FINAL_MANIFEST, FINAL_STAGING, FINAL_READY)
            and not _CKPT.match(n) and not n.startswith((STAGING_PREFIX, OLD_PREFIX))}


def publish_final(staged: str | Path, output_dir: str | Path) -> Path:
    """Replace the final model in `output_dir` by the complete one in `staged`: valid or absent at
    every moment, never mixed (the order is explained in the module docstring)."""
    staged, output_dir = Path(staged), Path(output_dir)
    names = sorted(p.name for p in staged.iterdir())
    if not any(n in LOAD_MARKERS for n in names):
        raise ValueError(f"{staged}: no {' or '.join(LOAD_MARKERS)}; not a model directory")
    fsync_tree(staged)
    ready = output_dir / FINAL_READY
    if staged != ready:
        remove(ready)
        os.rename(staged, ready)  # complete, being published
    old = _old_final_names(output_dir, names)
    for marker in LOAD_MARKERS:  # from here on the old model is absent
        (output_dir / marker).unlink(missing_ok=True)
    fsync_path(output_dir)
    for name in sorted(old):
        remove(output_dir / name)
    atomic_write(output_dir / FINAL_MANIFEST, json.dumps({"files": names}, indent=1))
    for name in sorted(names, key=lambda n: n in LOAD_MARKERS):  # the load markers last
        os.replace(ready / name, output_dir / name)
    fsync_path(output_dir)
    ready.rmdir()
    return output_dir
