"""The bad-input corpus of tests/test_bad_inputs.py, written into a directory at test time (nothing binary is committed).

    from tests.bad_inputs import write_images, write_data_files, damage_model_dir
    images = write_images(tmp / "images")           # {name: path}; BAD_IMAGES must fail, ODD_IMAGES must work
    data = write_data_files(tmp / "data", records)  # malformed / object / empty / non-UTF-8 / BOM / wrong types ...
    models = damage_model_dir(llava_dir, tmp / "models")   # truncated / corrupt weights, no tokenizer, ...

Every writer is deterministic and small (a decompression bomb is a 70-byte PNG whose header claims
20000 x 20000 pixels). The tables next to the writers say what each input must produce: an error
naming it, a counted skip with a given reason, or (for odd but valid inputs) normal operation.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import struct
import zlib
from pathlib import Path

# Images: name -> the skip reason `llava check-data` must count for it (chat: an error naming it).
BAD_IMAGES = {
    "zero_byte.png": "corrupt_image",
    "truncated.png": "corrupt_image",
    "random_bytes.png": "corrupt_image",
    "bomb.png": "corrupt_image",          # PIL's DecompressionBombError (400M pixels claimed)
    "directory.png": "missing_image",     # a directory where a file is expected
    "symlink_loop.png": "missing_image",  # a symlink to itself
    "missing.png": "missing_image",       # not written at all
}
# Odd but valid images: decoded and used (CMYK, 16-bit, alpha, palette + transparency, animated, EXIF-rotated).
ODD_IMAGES = ("cmyk.jpg", "gray16.png", "alpha.png", "palette.png", "animated.gif", "exif_rotated.jpg")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A tiny PNG whose header claims width x height RGB pixels (PIL refuses it before decoding)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def write_images(out: Path) -> dict[str, Path]:
    """Every BAD_IMAGES and ODD_IMAGES entry under `out` (missing.png stays missing); name -> path."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    Image.new("RGB", (64, 48), "red").save(good, "PNG")
    good = good.getvalue()
    (out / "zero_byte.png").write_bytes(b"")
    (out / "truncated.png").write_bytes(good[: len(good) // 2])
    (out / "random_bytes.png").write_bytes(random.Random(0).randbytes(2048))
    (out / "bomb.png").write_bytes(bomb_png())
    (out / "directory.png").mkdir(exist_ok=True)
    if not os.path.lexists(out / "symlink_loop.png"):
        os.symlink("symlink_loop.png", out / "symlink_loop.png")
    Image.new("CMYK", (40, 30), (0, 255, 0, 0)).save(out / "cmyk.jpg")
    Image.new("I;16", (40, 30), 40000).save(out / "gray16.png")
    Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(out / "alpha.png")
    pal = Image.new("P", (40, 30), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] * 128)
    pal.save(out / "palette.png", transparency=0)
    frames = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    frames[0].save(out / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    rotated = Image.new("RGB", (40, 30), "green")
    exif = rotated.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW
    rotated.save(out / "exif_rotated.jpg", exif=exif)
    return {name: out / name for name in [*BAD_IMAGES, *ODD_IMAGES]}


# Data JSON files that cannot be read at all: name -> a piece of the one-line error.
UNREADABLE_DATA = {
    "malformed.json": "malformed JSON",
    "object.json": "found an object",
    "empty.json": "empty file",
    "empty_list.json": "list of records is empty",
    "non_utf8.json": "not UTF-8",
    "deeply_nested.json": "nested too deeply",
    "missing.json": "no such data file",
}
# The wrong-typed records of `wrong_types.json` and the reason each is counted under.
WRONG_TYPE_REASONS = {"bad_record": 5, "bad_value": 1, "bad_image_field": 1, "bad_roles": 1}


def wrong_type_records(good: list[dict]) -> list:
    return [
        dict(good[1], image=5),                                                      # bad_image_field
        dict(good[2], conversations="not a list"),                                   # bad_record
        dict(good[3], conversations=[{"from": "human", "value": 3}, good[3]["conversations"][1]]),  # bad_value
        7, None, "a string",                                                         # bad_record x3
        dict(good[4], conversations=[{"from": 1, "value": "<image>\nhi"}, {"from": "gpt", "value": "x"}]),  # bad_roles
        dict(good[5], conversations=[None]),                                         # bad_record
    ]


def write_data_files(out: Path, good: list[dict]) -> dict[str, Path]:
    """LLaVA-1.5 JSON files: UNREADABLE_DATA (missing.json is not written), `bom.json` (valid, with a
    UTF-8 BOM), `wrong_types.json` (bad records among good ones) and `all_bad.json` (nothing usable)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "malformed.json").write_text('[{"id": 1,')
    (out / "object.json").write_text('{"id": 1}')
    (out / "empty.json").write_text("")
    (out / "empty_list.json").write_text("[]")
    (out / "non_utf8.json").write_bytes(b'[{"id": "\xff\xfe"}]')
    (out / "deeply_nested.json").write_text("[" + "[" * 100_000 + "]" * 100_000 + "]")
    (out / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(good[:4]).encode())
    (out / "wrong_types.json").write_text(json.dumps(wrong_type_records(good) + good[6:10]))
    (out / "all_bad.json").write_text(json.dumps(wrong_type_records(good)))
    return {p.name: p for p in out.iterdir()} | {"missing.json": out / "missing.json"}


def write_bytes_files(out: Path) -> dict[str, Path]:
    """Non-UTF-8, malformed and non-mapping YAML, and a plain file where a directory is expected."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"malformed.yaml": b"a: [1,\n", "list.yaml": b"- 1\n- 2\n", "non_utf8.yaml": b"\xff\xfe\x00",
             "a_file": b"not a directory\n", "non_utf8.txt": b"caption \xff\xfe\n"}
    for name, data in files.items():
        (out / name).write_bytes(data)
    return {name: out / name for name in files}


def truncate(path: Path, keep: int | float = 0.5) -> Path:
    """Cut `path` to `keep` bytes (an int) or to that fraction of its size (a float)."""
    data = path.read_bytes()
    path.write_bytes(data[: keep if isinstance(keep, int) else int(len(data) * keep)])
    return path


def damage_model_dir(src: Path, out: Path) -> dict[str, Path]:
    """Copies of the model directory `src`, each damaged one way; name -> directory."""
    out.mkdir(parents=True, exist_ok=True)

    def copy(name: str) -> Path:
        d = out / name
        if d.exists():
            shutil.rmtree(d)
        shutil.copytree(src, d)
        return d

    made = {}
    made["truncated_weights"] = copy("truncated_weights")
    truncate(made["truncated_weights"] / "model.safetensors", 0.5)
    made["truncated_header"] = copy("truncated_header")
    truncate(made["truncated_header"] / "model.safetensors", 100)
    made["corrupt_weights"] = copy("corrupt_weights")
    (made["corrupt_weights"] / "model.safetensors").write_bytes(random.Random(0).randbytes(4096))
    made["zero_byte_weights"] = copy("zero_byte_weights")
    (made["zero_byte_weights"] / "model.safetensors").write_bytes(b"")
    made["no_weights"] = copy("no_weights")
    (made["no_weights"] / "model.safetensors").unlink()
    made["no_tokenizer"] = copy("no_tokenizer")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (made["no_tokenizer"] / f).unlink(missing_ok=True)
    made["no_processor"] = copy("no_processor")
    for f in ("processor_config.json", "preprocessor_config.json"):
        (made["no_processor"] / f).unlink(missing_ok=True)
    made["config_malformed"] = copy("config_malformed")
    (made["config_malformed"] / "config.json").write_text("{bad")
    made["config_list"] = copy("config_list")
    (made["config_list"] / "config.json").write_text("[1]")
    made["empty_dir"] = out / "empty_dir"
    made["empty_dir"].mkdir(exist_ok=True)
    return made


def llava_train_configs(out: Path, base: dict) -> dict[str, Path]:
    """`llava train` YAML configs: the valid `base` (no deepspeed), an unknown key, a wrongly typed value."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in base.items() if k != "deepspeed"}
    files = {"base.yaml": base, "unknown_key.yaml": {**base, "no_such_field": 3},
             "wrong_type.yaml": {**base, "lora_r": "sixteen"}}
    for name, cfg in files.items():
        (out / name).write_text(yaml.safe_dump(cfg))
    return {name: out / name for name in files}


# `clips train` run configs: name -> (YAML text with {model} for the architecture JSON, piece of the error).
CLIPS_CONFIGS = {
    "unknown_key.yaml": ("model: {model}\nmethod:\n  no_such_key: 1\n", "unknown key(s) no_such_key"),
    "wrong_type.yaml": ("model: {model}\nmethod:\n  k: sixteen\n", "method.k: expected int"),
    "wrong_bool.yaml": ("model: {model}\nrun:\n  grad_checkpointing: maybe\n", "run.grad_checkpointing: expected bool"),
    "short_betas.yaml": ("model: {model}\noptim:\n  betas: [0.9]\n", "optim.betas"),
    "section_not_mapping.yaml": ("model: {model}\nmethod: 5\n", "method: expected a mapping"),
    "malformed.yaml": ("model: {model}\noptim: {{steps: [\n", "not valid YAML"),
    "list.yaml": ("- a\n", "expected a mapping of sections"),
    "model_missing.yaml": ("model: {missing}\n", "architecture JSON not found"),
    "model_malformed.yaml": ("model: {malformed}\n", "malformed JSON"),
}


def write_clips_configs(out: Path, arch: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "arch_malformed.json").write_text("{")
    paths = {}
    for name, (text, _) in CLIPS_CONFIGS.items():
        (out / name).write_text(text.format(model=arch, missing=out / "no_such_arch.json",
                                            malformed=out / "arch_malformed.json"))
        paths[name] = out / name
    return paths
