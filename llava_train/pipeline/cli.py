"""The `clips-llava` console script: one registry of subcommands, each a module with `main(argv)`.

    clips-llava --help
    clips-llava synth --out runs/world --preset tiny

Subcommand modules are imported lazily so that `clips-llava --help` stays fast and a subcommand's
heavy imports (torch, deepspeed, lmms-eval) are paid only when it runs. Each runs under
`llava_train.errors.run_guarded`: bad input is one `clips-llava CMD: error: ...` line and exit 2;
`clips-llava --debug CMD ...` (or CLIPS_LLAVA_DEBUG=1) shows the traceback instead.
"""
from __future__ import annotations

import importlib
import os
import sys

from clips_tower.io import unknown_message

# name -> (module exposing `main(argv) -> int`, one-line help). Exact names only.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("clips_tower.world.cli", "write the embedded synthetic world (images, captions, LLaVA JSON, eval splits)"),
    "clips": ("clips_tower.cli", "CLIPS tower pretraining: `clips train`, `clips eval`"),
    "tower": ("clips_tower.adapter.cli", "export a tower as an HF-native LLaVA vision tower, check parity"),
    "lm": ("llava_train.lm.cli", "small language model for the embedded world: `lm init`, `lm pretrain`"),
    "llava": ("llava_train.cli", "LLaVA training: `llava train`, `llava check-data`, `llava merge-lora`, projector import/export"),
    "eval": ("clips_llava_eval.cli", "lmms-eval runs (`eval run`) and the gains report (`eval report`)"),
    "chat": ("llava_train.chat.cli", "chat with a Llava model in the terminal (streaming, 4/8-bit)"),
    "demo": ("llava_train.pipeline.demo", "the main job: the whole path end to end on the embedded world"),
}
# Commands whose first argument names a nested command (`clips-llava llava train`): errors say which.
NESTED = {"clips", "tower", "lm", "llava", "eval"}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: clips-llava [--debug] <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run `clips-llava <command> --help` for a command's options and an example."]
    lines += ["--debug (or CLIPS_LLAVA_DEBUG=1): show the traceback of an input error instead of one line."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--debug"]:
        from llava_train.errors import DEBUG_ENV

        os.environ[DEBUG_ENV] = "1"  # inherited by the subprocesses a command starts (demo steps)
        argv = argv[1:]
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"clips-llava: {unknown_message('command', name, SUBCOMMANDS)}", file=sys.stderr)
        return 2
    from llava_train.errors import run_guarded

    prog = f"clips-llava {name}"
    if name in NESTED and rest and not rest[0].startswith("-"):
        prog += f" {rest[0]}"
    return run_guarded(prog, lambda args: importlib.import_module(SUBCOMMANDS[name][0]).main(args), rest)


if __name__ == "__main__":
    sys.exit(main())
