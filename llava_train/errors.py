"""Bad input is one line: the guard every `clips-llava` subcommand (and `python -m llava_train.train`) runs under.

    from llava_train.errors import run_guarded
    sys.exit(run_guarded("clips-llava llava train", main, argv))

`run_guarded` calls `main(argv)`; an expected input error escaping it (a missing, unreadable or
malformed file, a bad value, a corrupt image or weight file, a YAML error, this project's own
error classes, all ValueErrors or OSErrors) becomes `PROG: error: MESSAGE` on stderr and exit
code 2, with no traceback. Anything else is a bug and keeps its traceback. `clips-llava --debug
...` or `CLIPS_LLAVA_DEBUG=1` re-raises instead, for the full traceback. Messages that would not
name the input are fixed where they are raised (`clips_tower.inputs` checks model files up front);
`describe` adds the file name an OSError carries.
"""
from __future__ import annotations

import os
import sys

from clips_tower.inputs import debug_enabled  # noqa: F401  (re-exported)

DEBUG_ENV = "CLIPS_LLAVA_DEBUG"


def expected_errors() -> tuple[type[BaseException], ...]:
    """The exception classes that mean bad input (imported lazily: only what is installed)."""
    classes: list[type[BaseException]] = [OSError, ValueError]  # incl. JSONDecodeError, UnicodeDecodeError
    try:
        import yaml

        classes.append(yaml.YAMLError)
    except ImportError:
        pass
    try:
        from PIL import Image

        classes.append(Image.DecompressionBombError)  # UnidentifiedImageError is an OSError
    except ImportError:
        pass
    try:
        from safetensors import SafetensorError

        classes.append(SafetensorError)
    except ImportError:
        pass
    return tuple(classes)


def describe(exc: BaseException) -> str:
    """One line for `exc`, naming the file an OSError carries when its message does not."""
    text = str(exc).strip()
    if isinstance(exc, OSError) and exc.filename is not None:
        name = os.fsdecode(exc.filename)
        why = exc.strerror or text or type(exc).__name__
        if exc.filename2 is not None:
            name = f"{name} -> {os.fsdecode(exc.filename2)}"
        text = why if name in why else f"{name}: {why[0].lower() + why[1:] if why else why}"
    elif isinstance(exc, UnicodeDecodeError):
        text = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    first = text.splitlines()[0].strip() if text else ""
    return first or type(exc).__name__


def report(prog: str, exc: BaseException, code: int = 2) -> int:
    """Print `PROG: error: ...` for `exc` and return `code`; under --debug re-raise it instead."""
    if debug_enabled():
        raise exc
    print(f"{prog}: error: {describe(exc)}", file=sys.stderr)
    return code


def run_guarded(prog: str, main, argv: list[str] | None = None) -> int:
    """`main(argv)`, with every expected input error as one line and exit code 2."""
    try:
        return int(main(argv) or 0)
    except expected_errors() as e:
        return report(prog, e)
