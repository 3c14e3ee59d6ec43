"""The `clips-llava` console script: one registry of subcommands, each a module with `main(argv)`.

    clips-llava --help
    clips-llava synth --out runs/world --preset tiny

Subcommand modules are imported lazily so that `clips-llava --help` stays fast and a subcommand's
heavy imports (torch, deepspeed, lmms-eval) are paid only when it runs.
"""
from __future__ import annotations

import importlib
import sys

# name -> (module exposing `main(argv) -> int`, one-line help). Exact names only.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("llava_train.world.cli", "write the embedded synthetic world (images, captions, LLaVA JSON, eval splits)"),
    "clips": ("clips_tower.cli", "CLIPS tower pretraining: `clips train`, `clips eval`"),
    "tower": ("clips_tower.adapter.cli", "export a tower as an HF-native LLaVA vision tower, check parity"),
    "lm": ("llava_train.lm.cli", "small language model for the embedded world: `lm init`, `lm pretrain`"),
    "llava": ("llava_train.cli_llava", "LLaVA training: `llava train`, `llava check-data`, `llava merge-lora`, projector import/export"),
    "eval": ("eval.cli", "lmms-eval runs (`eval run`) and the gains report (`eval report`)"),
    "chat": ("llava_train.chat", "chat with a Llava model in the terminal (streaming, 4/8-bit)"),
    "demo": ("llava_train.demo", "the main job: the whole path end to end on the embedded world"),
}


def _usage() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = ["usage: clips-llava <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    lines += ["", "Run `clips-llava <command> --help` for a command's options and an example."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"clips-llava: unknown command {name!r}; known: {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
