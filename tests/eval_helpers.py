"""Helper for the eval tests: a hand-made eval split in the synthetic world's format (with RGBA
images and known answers), for data-preparation tests that need exact control over the rows.

    from tests.eval_helpers import make_eval_world
    world = make_eval_world(tmp_path / "world")     # WORLD/eval/{pope,gqa,...}.jsonl + images
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

COLORS = ["red", "blue", "green", "yellow"]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_eval_world(root: str | Path, n_images: int = 4) -> Path:
    """Write WORLD/eval/ with every split the local suite reads (a few rows each); return WORLD."""
    root = Path(root)
    ev = root / "eval"
    (ev / "images").mkdir(parents=True, exist_ok=True)
    images = []
    for i in range(n_images):
        name = f"images/img{i}.png"
        # RGBA on purpose: lmms-eval's doc_to_visual must convert to RGB.
        Image.new("RGBA", (40, 24), COLORS[i % len(COLORS)]).save(ev / name)
        images.append(name)
    pope, mme, gqa, cap, tvqa, chart = [], [], [], [], [], []
    for i, img in enumerate(images):
        color = COLORS[i % len(COLORS)]
        pope += [
            {"question_id": f"p{i}y", "image": img, "question": f"Is there a {color} square in the image?",
             "answer": "yes", "category": "random", "object": f"{color} square"},
            {"question_id": f"p{i}n", "image": img, "question": "Is there a cat in the image?",
             "answer": "no", "category": "adversarial", "object": "cat"},
        ]
        mme += [
            {"question_id": f"m{i}a", "image": img, "question": f"Is the image {color}? Please answer yes or no.",
             "answer": "Yes", "category": "color"},
            {"question_id": f"m{i}b", "image": img, "question": "Is the image black? Please answer yes or no.",
             "answer": "No", "category": "color"},
        ]
        gqa.append({"question_id": f"g{i}", "image": img, "question": "What color is the image?", "answer": color})
        cap.append({"question_id": f"c{i}", "image": img, "references": [f"a plain {color} image", f"{color} background"]})
        tvqa.append({"question_id": f"t{i}", "image": img, "question": "What does the text say?", "answers": [color]})
        chart.append({"question_id": f"h{i}", "image": img, "question": "What is the value of the bar?", "answer": str(i + 1)})
    for name, rows in [("pope", pope), ("mme", mme), ("gqa", gqa), ("caption", cap), ("textvqa", tvqa), ("chartqa", chart)]:
        _write_jsonl(ev / f"{name}.jsonl", rows)
    return root
