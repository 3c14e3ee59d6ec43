"""Turn a synthetic world's held-out splits (`WORLD/eval/*.jsonl` + images) into lmms-eval local tasks.

For each local task this writes `OUT/<task>.parquet` (images embedded as bytes, HF `Image`
feature, so lmms-eval loads it offline with `dataset_path: parquet`) and `OUT/<task>.yaml`, a
two-key override of `eval/tasks/<task>.yaml` that points `data_files` at the parquet file next to
it. `OUT` is then a self-contained lmms-eval include dir:

    clips-llava eval prepare --data runs/world --out runs/eval-data
    python -m lmms_eval --model llava_hf --model_args pretrained=DIR,device_map=cpu \
        --tasks synth_pope --include_path runs/eval-data        # or --include_path eval/tasks

(`eval/tasks/*.yaml` default to `runs/eval-data/<task>.parquet` relative to the working dir.)
Rows with a missing image or field are skipped and counted, never fatal.

`prepare(..., blind=True)` writes the blind control: the same rows, question ids and answers, but
every row's image replaced by one fixed image (the task's first usable image), so a model's score
there is what it gets from the text and its priors alone; the gap to the real score is what vision buys.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from clips_tower.images import open_image
from clips_tower.io import atomic_path, lookup

TASKS_DIR = Path(__file__).resolve().parent / "tasks"


def _qa(row: dict) -> dict:
    return {"question_id": str(row["question_id"]), "question": row["question"], "answer": str(row["answer"])}


def _pope(row: dict) -> dict:
    return {**_qa(row), "category": row.get("category", ""), "object": row.get("object", "")}


def _mme(row: dict) -> dict:
    # MME pairs the 2 questions of an image by `question_id`, so it is the image path here
    # (as in the real MME data); the world's own id is kept in `sample_id`.
    return {"question_id": row["image"], "sample_id": str(row["question_id"]), "question": row["question"],
            "answer": str(row["answer"]), "category": row["category"]}


def _caption(row: dict) -> dict:
    return {"question_id": str(row["question_id"]), "references": [str(r) for r in row["references"]]}


def _textvqa(row: dict) -> dict:
    return {"question_id": str(row["question_id"]), "question": row["question"],
            "answers": [str(a) for a in row["answers"]]}


@dataclass(frozen=True)
class LocalTask:
    jsonl: str  # relative to WORLD/eval/
    convert: Callable[[dict], dict]  # world row -> parquet row (without the image)


# Exact task names of the local suite; each has eval/tasks/<name>.yaml.
LOCAL_TASKS: dict[str, LocalTask] = {
    "synth_pope": LocalTask("pope.jsonl", _pope),
    "synth_gqa": LocalTask("gqa.jsonl", _qa),
    "synth_mme": LocalTask("mme.jsonl", _mme),
    "synth_caption": LocalTask("caption.jsonl", _caption),
    "synth_textvqa": LocalTask("textvqa.jsonl", _textvqa),
    "synth_chartqa": LocalTask("chartqa.jsonl", _qa),
}


def get_local_task(name: str) -> LocalTask:
    return lookup(LOCAL_TASKS, name, "local task")


def _read_rows(split_dir: Path, spec: LocalTask) -> tuple[list[dict], int]:
    """Parse the JSONL; return (rows with `image` bytes, number of skipped lines)."""
    rows, skipped = [], 0
    for line in (split_dir / spec.jsonl).read_text().splitlines():
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            row = spec.convert(raw)
            image = (split_dir / raw["image"]).read_bytes()
        except (KeyError, TypeError, ValueError, OSError):
            skipped += 1
            continue
        try:
            open_image(image)  # an undecodable image is a skipped row here, not a crash inside lmms-eval
        except Exception:  # any decoder error, incl. PIL's DecompressionBombError
            skipped += 1
            continue
        row["image"] = {"bytes": image, "path": Path(raw["image"]).name}
        rows.append(row)
    for i, row in enumerate(rows):
        row["image_id"] = i  # an integer id per sample, needed by the COCO caption tools
    return rows, skipped


def write_parquet(rows: list[dict], path: Path) -> None:
    """Write rows to parquet with an HF `Image` column (atomic: temp file + rename)."""
    import datasets

    features = datasets.Features({
        k: (datasets.Image() if k == "image" else
            datasets.Sequence(datasets.Value("string")) if isinstance(v, list) else
            datasets.Value("int64") if isinstance(v, int) else datasets.Value("string"))
        for k, v in rows[0].items()
    })
    with atomic_path(path) as tmp:
        datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp))


def blind_rows(rows: list[dict]) -> list[dict]:
    """The blind control of `rows`: every image replaced by the first row's image (bytes and name)."""
    fixed = rows[0]["image"]
    return [{**row, "image": dict(fixed)} for row in rows]


def prepare(world: str | Path, out: str | Path, tasks: list[str] | None = None,
            blind: bool = False) -> dict[str, int]:
    """Write parquet + include YAML for each requested local task; return {task: number of rows}.
    `blind`: every image replaced by one fixed image per task (the blind control).

    Raises FileNotFoundError when the world has no eval split for a requested task, and
    ValueError when a split has no usable row.
    """
    split_dir = Path(world) / "eval"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in tasks or list(LOCAL_TASKS):
        spec = get_local_task(name)
        if not (split_dir / spec.jsonl).is_file():
            raise FileNotFoundError(f"{split_dir / spec.jsonl} not found (is {world} a synthetic world?)")
        rows, skipped = _read_rows(split_dir, spec)
        if skipped:
            print(f"{name}: skipped {skipped} unusable row(s) of {spec.jsonl}")
        if not rows:
            raise ValueError(f"{split_dir / spec.jsonl} has no usable row")
        write_parquet(blind_rows(rows) if blind else rows, out / f"{name}.parquet")
        override = {"include": str(TASKS_DIR / f"{name}.yaml"),
                    "dataset_kwargs": {"data_files": {"test": f"{name}.parquet"}}}
        (out / f"{name}.yaml").write_text(yaml.safe_dump(override, sort_keys=False))
        counts[name] = len(rows)
    return counts
