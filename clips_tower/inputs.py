"""Up-front checks of user-given model files, so a bad one is one line naming it, before any loader runs.

    from clips_tower.inputs import InputError, check_safetensors, check_model_dir, read_yaml_mapping
    check_safetensors("runs/lm/model.safetensors")       # truncated / corrupt header -> InputError
    cfg = check_model_dir("runs/llava", model_type="llava", processor=True, tokenizer=True)
    is_llava_dir("runs/llava"), is_hub_id("llava-hf/llava-1.5-7b-hf")   # True, True

Loaders deep in transformers, safetensors and open_clip fail on such files with messages that do
not say which file (`SafetensorError: Error while deserializing header: incomplete metadata`), or
with an AttributeError on a config that is not an object. These checks are cheap (they read
`config.json` and the safetensors headers, never the weights) and raise `InputError`, a
ValueError whose one-line message names the directory or file and the problem. Only the light
standard library is imported here.
"""
from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "tekken.json", "tokenizer.tiktoken")
_MAX_HEADER = 100 << 20  # safetensors' own limit on the JSON header
LLAVA = "llava"  # config.json model_type of a stock HF Llava
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")  # owner/name on the Hugging Face Hub


class InputError(ValueError):
    """A user-given file or directory is unusable; the message is one line and names it."""


def debug_enabled() -> bool:
    """`clips-llava --debug` / CLIPS_LLAVA_DEBUG=1: input errors show their traceback instead of one line."""
    return os.environ.get("CLIPS_LLAVA_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def check_safetensors(path: str | Path) -> None:
    """Raise InputError unless `path` is a complete safetensors file (header parsed, every tensor's
    bytes present). Reads the header only."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: weight file not found" if not path.exists() else f"{path}: not a file")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise InputError(f"{path}: not a safetensors file ({size} bytes, truncated or empty)")
            (n,) = struct.unpack("<Q", head)
            if n > _MAX_HEADER:
                raise InputError(f"{path}: not a safetensors file (corrupt header)")
            if 8 + n > size:
                raise InputError(f"{path}: truncated safetensors file ({size} bytes, shorter than its "
                                 f"{n}-byte header)")
            header = json.loads(f.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{path}: not a valid safetensors file (unreadable header: corrupt)") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    if not isinstance(header, dict):
        raise InputError(f"{path}: not a valid safetensors file (header is not an object: corrupt)")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(x, int) for x in offsets)):
            raise InputError(f"{path}: not a valid safetensors file (tensor {name!r} has no data_offsets: corrupt)")
        end = max(end, offsets[1])
    if size < 8 + n + end:
        raise InputError(f"{path}: truncated safetensors file ({size} of {8 + n + end} bytes)")


def weight_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files a model directory's weights live in (per its index, else every *.safetensors)."""
    model_dir = Path(model_dir)
    for index in sorted(model_dir.glob("*.safetensors.index.json")):
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
            names = sorted(set(weight_map.values()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError):
            raise InputError(f"{index}: not a valid safetensors index (no weight_map object)") from None
        return [model_dir / name for name in names]
    return sorted(model_dir.glob("*.safetensors"))


def check_weights(model_dir: str | Path, what: str = "model") -> list[Path]:
    """Check every safetensors weight file of `model_dir`; InputError when there are no weights at all."""
    model_dir = Path(model_dir)
    files = weight_files(model_dir)
    for f in files:
        check_safetensors(f)
    if not files and not any(model_dir.glob("*.bin")) and not any(model_dir.glob("*.pt")):
        raise InputError(f"{model_dir}: no {what} weights (no *.safetensors or *.bin file)")
    return files


def read_json_object(path: str | Path, what: str = "JSON file") -> dict:
    """A JSON file that must hold an object; InputError naming it otherwise."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a {what}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from None
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object, found {type(value).__name__}")
    return value


def check_model_dir(model_dir: str | Path, model_type: str | None = None, *, weights: bool = True,
                    processor: bool = False, tokenizer: bool = False, what: str = "model") -> dict:
    """Check an HF model directory up front; returns its config.json. InputError names the problem:
    missing dir, no/unreadable config.json, the wrong model_type, missing or damaged weights, no
    image processor or no tokenizer files (when asked for)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise InputError(f"{model_dir}: {what} directory not found" if not model_dir.exists()
                         else f"{model_dir}: not a directory (expected a {what} directory)")
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir}: not a {what} directory (no config.json)")
    config = read_json_object(model_dir / "config.json", "config.json")
    if model_type is not None:
        check_model_type(model_dir, config, model_type)
    if weights:
        check_weights(model_dir, what)
    if processor and not any((model_dir / f).is_file() for f in PROCESSOR_FILES):
        raise InputError(f"{model_dir}: no image processor ({' or '.join(PROCESSOR_FILES)})")
    if tokenizer and not any((model_dir / f).is_file() for f in TOKENIZER_FILES):
        raise InputError(f"{model_dir}: no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...)")
    return config


def check_model_type(model_dir: str | Path, config: dict, model_type: str) -> None:
    """InputError unless `config` (the config.json of `model_dir`) has this `model_type`."""
    if config.get("model_type") != model_type:
        raise InputError(f"{model_dir}: not a {model_type.capitalize()} model directory (config.json "
                         f"model_type={config.get('model_type')!r}, expected {model_type!r})")


def is_llava_dir(path: str | Path) -> bool:
    """Whether `path` is a local stock HF Llava directory: a readable config.json with model_type "llava"
    (False for a hub id, a language model, a missing or unreadable config)."""
    try:
        check_model_type(path, read_json_object(Path(path) / "config.json", "config.json"), LLAVA)
    except InputError:
        return False
    return True


def is_hub_id(name: str | Path) -> bool:
    """Whether `name` has the shape of a Hugging Face Hub id `owner/name` (it says nothing of existence)."""
    return _HUB_ID.fullmatch(str(name)) is not None


def read_yaml_mapping(path: str | Path, expected: str = "a mapping") -> dict:
    """A YAML file's top-level mapping; InputError naming the file when it is missing, not UTF-8, not
    valid YAML (with the line) or not a mapping (`expected` says what it should hold)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"config not found: {path}" if not p.exists() else f"{path}: not a file")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8-sig")) or {}
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}: not valid YAML{where}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected {expected}, got {type(raw).__name__}")
    return raw
