"""Run configs for CLIPS pretraining: one YAML file = architecture + method + data + optimiser + run.

    from clips_tower.config import load_run_config
    cfg = load_run_config("configs/clips/tiny.yaml", overrides={"optim.steps": 5})

`model:` is a path to an open_clip architecture JSON, relative to the YAML file. Unknown keys are
errors (a misspelt key must not silently fall back to a default).

Caption sources (`data.web_caption_key`, `data.synthetic_caption_key`) say where a sample's captions
are read from. A source is either

- `EXT`, a webdataset member of the sample: `txt` reads `KEY.txt` as UTF-8 text (extensions are
  matched lower-case, as webdataset reports them; image extensions and `json` are not captions), or
- `json:FIELD`, a top-level string field of the sample's `KEY.json` (e.g. `json:re_caption`).

A key is one source or a list of sources tried in order; the first non-empty one is the caption.
The defaults are the embedded synthetic world's layout (web: json "web_caption", else `KEY.txt`;
synthetic: json "synthetic_caption"). `data.require_json_status` (e.g. `success` for img2dataset
shards) additionally skips samples whose json "status" differs. A sample lacking every source of a
caption it needs is a counted skip in the data pipeline; a malformed source is a ValueError here.
"""
from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from clips_tower.io import check_known
from clips_tower.text_reduction import STRATEGIES

VIEWS = ("web", "synthetic")


@dataclass
class MethodCfg:
    views: list[str] = field(default_factory=lambda: ["web", "synthetic"])  # contrastive views
    strategy: str = "subcaption"  # token reduction of the synthetic caption (text_reduction.STRATEGIES)
    k: int = 32  # tokens the text encoder sees of the synthetic caption
    captioner: bool = True
    # caption target positions scored per sample and step (0 = all). The full-vocabulary softmax
    # dominates a small model's step on CPU; scoring a random subset is an unbiased estimate.
    caption_positions: int = 0
    contrastive_weight: float = 1.0
    caption_weight: float = 2.0


IMAGE_EXTS = ("png", "jpg", "jpeg", "webp")  # sample members read as the image
_MEMBER_EXT = re.compile(r"^[a-z0-9_][a-z0-9_.-]*$")


@dataclass(frozen=True)
class CaptionSource:
    """One place a caption is read from: a webdataset member (`kind="member"`) or a json field."""

    kind: str  # "member" or "json"
    name: str  # member extension (lower-case) or json field name

    def describe(self) -> str:
        return f'json "{self.name}"' if self.kind == "json" else f"`.{self.name}`"


def parse_caption_sources(value: Any, where: str) -> tuple[CaptionSource, ...]:
    """A caption key (one source or a list) -> its sources in order; ValueError naming `where`."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{where}: {value!r} is not a caption source; use `EXT` (a webdataset member such as "
                         f"txt), `json:FIELD`, or a non-empty list of them")
    sources = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{where}: caption source {item!r} is not a string (`EXT` or `json:FIELD`)")
        text = item.strip()
        if text.startswith("json:"):
            name = text[len("json:"):].strip()
            if not name:
                raise ValueError(f"{where}: caption source {item!r} names no json field (use `json:FIELD`)")
            sources.append(CaptionSource("json", name))
            continue
        ext = text.lower()
        if not _MEMBER_EXT.match(ext):
            raise ValueError(f"{where}: unknown caption source {item!r}; use `EXT` (a webdataset member "
                             f"extension such as txt) or `json:FIELD` (a field of the sample's json)")
        if ext in IMAGE_EXTS or ext == "json":
            raise ValueError(f"{where}: caption source {item!r} is the sample's {'image' if ext != 'json' else 'json'}, "
                             f"not a caption; for a json field use `json:FIELD`")
        sources.append(CaptionSource("member", ext))
    return tuple(sources)


@dataclass
class DataCfg:
    shuffle_buffer: int = 256  # raw samples held by the shuffle buffer, per process
    shuffle_initial: int = 64
    # caption sources (see the module docstring): `EXT`, `json:FIELD`, or a list tried in order
    web_caption_key: str | list[str] = field(default_factory=lambda: ["json:web_caption", "txt"])
    synthetic_caption_key: str | list[str] = "json:synthetic_caption"
    require_json_status: str | None = None  # e.g. "success": skip samples whose json "status" differs

    @property
    def web_sources(self) -> tuple[CaptionSource, ...]:
        return parse_caption_sources(self.web_caption_key, "data.web_caption_key")

    @property
    def synthetic_sources(self) -> tuple[CaptionSource, ...]:
        return parse_caption_sources(self.synthetic_caption_key, "data.synthetic_caption_key")


@dataclass
class OptimCfg:
    steps: int = 100
    batch_size: int = 32  # per process; the contrastive loss sees batch_size * world_size
    lr: float = 5e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    warmup_steps: int = 10
    grad_clip: float = 1.0


@dataclass
class RunCfg:
    seed: int = 0
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 10
    grad_checkpointing: bool = False
    precision: str = "auto"  # auto = bf16 autocast on GPU, fp32 on CPU; or "fp32", "bf16"


@dataclass
class ClipsRunConfig:
    model: str  # resolved path of the architecture JSON
    method: MethodCfg = field(default_factory=MethodCfg)
    data: DataCfg = field(default_factory=DataCfg)
    optim: OptimCfg = field(default_factory=OptimCfg)
    run: RunCfg = field(default_factory=RunCfg)

    def validate(self) -> None:
        m = self.method
        bad = [v for v in m.views if v not in VIEWS]
        if bad or not (m.views or m.captioner):
            raise ValueError(f"method.views {m.views!r}: use a non-empty subset of {list(VIEWS)} (or the captioner)")
        check_known(m.strategy, STRATEGIES, "method.strategy")
        if m.k < 1 or m.caption_positions < 0 or self.optim.batch_size < 1 or self.optim.steps < 0:
            raise ValueError("method.k and optim.batch_size must be positive, optim.steps >= 0 "
                             "(0: export the initialised, untrained tower)")
        check_known(self.run.precision, ("auto", "fp32", "bf16"), "run.precision")
        parse_caption_sources(self.data.web_caption_key, "data.web_caption_key")  # ValueError when malformed
        parse_caption_sources(self.data.synthetic_caption_key, "data.synthetic_caption_key")
        status = self.data.require_json_status
        if status is not None and (not isinstance(status, str) or not status.strip()):
            raise ValueError(f"data.require_json_status {status!r}: use a status string (e.g. success) or null")

    @property
    def needs_synthetic(self) -> bool:
        return "synthetic" in self.method.views or self.method.captioner

    @property
    def needs_web(self) -> bool:
        return "web" in self.method.views or self.method.captioner

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _type_ok(value: Any, tp: Any) -> bool:
    """Whether a YAML value fits a field annotation (int, float, bool, str, None, X | Y, list[X], tuple[X, ...])."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_type_ok(v, args[0]) for v in value)
    if origin is tuple:  # YAML has no tuples: a list of the right length
        return isinstance(value, (list, tuple)) and len(value) == len(args) and all(map(_type_ok, value, args))
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, tp) if isinstance(tp, type) else True


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) if isinstance(tp, type) else str(tp).replace("typing.", "")


# Fields whose values `ClipsRunConfig.validate` checks with its own, more specific messages.
_CHECKED_BY_VALIDATE = {"web_caption_key", "synthetic_caption_key", "require_json_status"}


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected a mapping of key: value, got {type(values).__name__} {values!r}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(map(str, unknown))} in {where}; known: {', '.join(known)}")
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key in _CHECKED_BY_VALIDATE:
            continue
        if not _type_ok(value, hints[key]):
            raise ValueError(f"{where}.{key}: expected {_type_name(hints[key])}, got {type(value).__name__} {value!r}")
    values = dict(values)
    if "betas" in values:
        values["betas"] = tuple(values["betas"])
    return cls(**values)


def load_run_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ClipsRunConfig:
    """Read a run YAML; `overrides` maps "section.key" to a value (CLI flags)."""
    from clips_tower.inputs import read_yaml_mapping

    path = Path(path)
    if not path.is_file() and not path.exists():
        raise FileNotFoundError(f"run config not found: {path}")
    raw = read_yaml_mapping(path, "a mapping of sections (model, method, data, optim, run)")
    for dotted, value in (overrides or {}).items():
        section, key = dotted.split(".")
        if raw.get(section) is None:
            raw[section] = {}
        if not isinstance(raw[section], dict):
            raise ValueError(f"{path}:{section}: expected a mapping of key: value, got {raw[section]!r}")
        raw[section][key] = value
    sections = {"method": MethodCfg, "data": DataCfg, "optim": OptimCfg, "run": RunCfg}
    unknown = sorted(map(str, set(raw) - set(sections) - {"model"}))
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)} in {path}; known: model, {', '.join(sections)}")
    if "model" not in raw:
        raise ValueError(f"{path}: missing `model:` (path to an architecture JSON)")
    if not isinstance(raw["model"], str) or not raw["model"].strip():
        raise ValueError(f"{path}: `model:` must be a path to an architecture JSON, got {raw['model']!r}")
    model = Path(raw["model"])
    model = model if model.is_absolute() else (path.parent / model)
    cfg = ClipsRunConfig(
        model=str(model),
        **{name: _build(cls, raw.get(name) or {}, f"{path}:{name}") for name, cls in sections.items()},
    )
    cfg.validate()
    return cfg
