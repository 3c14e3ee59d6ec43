"""The one flag vocabulary of the `clips-llava` subcommands, and the old spellings kept as aliases.

Every subcommand spells its flags with dashes and uses the same word for the same idea:

    --model    the model, tower or checkpoint the command reads (a directory, file, name or hub id)
    --base     the base model under a LoRA adapter given as --model
    --data     the dataset or synthetic world directory it reads
    --images   an image folder it reads
    --out      what it writes (a directory or a file); `tower check` takes the --out of the export
               it checks, so its command line is the export's with `check` for `export`
    --run      NAME=DIR (or KEY=FILE), repeated: one of several runs to compare
    --config, --preset, --seed, --steps, --batch-size, --device, --overwrite: as everywhere

`clips-llava llava train` and `check-data` keep HF's `--field_name` spelling for the training
fields (`--model_name_or_path`, `--data_path`, ...): those are the LLaVA recipe's own names.

Old spellings stay accepted for one release: `renamed(argv, ALIASES, prog)` rewrites them to the
new ones before argparse sees them (so --help shows only the new names and "required" keeps
working) and prints one line per old spelling used, e.g.

    clips-llava lm: --batch_size is deprecated; use --batch-size
"""
from __future__ import annotations

import sys


def renamed(argv: list[str], aliases: dict[str, str], prog: str) -> list[str]:
    """`argv` with each old flag in `aliases` (old -> new) replaced by its new spelling, also in the
    `--old=value` form; tokens after a bare `--` are left alone. Warns once per old flag on stderr."""
    out, warned, options = [], set(), True
    for token in argv:
        token = str(token)
        if token == "--":
            options = False
        flag, eq, value = token.partition("=")
        if options and flag in aliases:
            if flag not in warned:
                print(f"{prog}: {flag} is deprecated; use {aliases[flag]}", file=sys.stderr)
                warned.add(flag)
            token = aliases[flag] + eq + value
        out.append(token)
    return out
