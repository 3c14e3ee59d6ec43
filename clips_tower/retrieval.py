"""Zero-shot image<->text retrieval (R@1/5/10) on a Karpathy-format JSON: `clips-llava clips eval`.

    clips-llava clips eval --model runs/clips-tiny/export --data runs/world-tiny --out runs/clips-tiny/retrieval.json
    clips-llava clips eval --model DIR --data dataset_coco.json --images /data/coco   # COCO / Flickr30k Karpathy

Karpathy format: {"images": [{"filepath", "filename", "split", "sentences": [{"raw": ...}]}]}.
Images of split "test" are used when any exist, otherwise all. Image paths are
`IMAGES/filepath/filename`; without `--images`, IMAGES is the JSON's folder or its parent,
whichever holds the first image (the synthetic world keeps its JSON in `eval/retrieval/` and
its images in `eval/images/`). A world dir as `--data` means its `eval/retrieval/dataset.json`.
Image->text counts a hit when any of the image's captions is in the top K; text->image when the
caption's image is. The model is loaded with stock open_clip (`local-dir:`), like any checkpoint.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from clips_tower.images import load_rgb
from clips_tower.inputs import debug_enabled

EXAMPLE = ("example:\n  clips-llava clips eval --model runs/clips-tiny/export --data runs/world-tiny "
           "--out runs/clips-tiny/retrieval.json")
KS = (1, 5, 10)


def load_karpathy(data: str | Path, images: str | Path | None = None) -> tuple[list[Path], list[str], list[int]]:
    """(image paths, captions, caption -> image index) of the test split (or everything)."""
    path = Path(data)
    if path.is_dir():
        path = path / "eval" / "retrieval" / "dataset.json"
    if not path.is_file():
        raise FileNotFoundError(f"retrieval JSON not found: {path}")
    from clips_tower.inputs import read_json_object

    entries = read_json_object(path, "retrieval JSON").get("images")
    if not entries or not isinstance(entries, list):
        raise ValueError(f"{path}: no \"images\" list (expected Karpathy format)")
    for i, e in enumerate(entries):
        ok = (isinstance(e, dict) and isinstance(e.get("filename"), str) and isinstance(e.get("filepath", ""), str)
              and isinstance(e.get("sentences", []), list)
              and all(isinstance(t, dict) and isinstance(t.get("raw"), str) for t in e.get("sentences", [])))
        if not ok:
            raise ValueError(f"{path}: images[{i}] is not a Karpathy entry (filename, filepath: strings; "
                             f"sentences: a list of {{\"raw\": caption}})")
    if any(e.get("split") == "test" for e in entries):
        entries = [e for e in entries if e.get("split") == "test"]
    rel = [Path(e.get("filepath", "")) / e["filename"] for e in entries]
    roots = [Path(images)] if images else [path.parent, path.parent.parent]
    root = next((r for r in roots if (r / rel[0]).is_file()), None)
    if root is None:
        raise FileNotFoundError(f"image {rel[0]} not found under {' or '.join(map(str, roots))} (use --images)")
    paths, captions, owner = [], [], []
    for i, (e, r) in enumerate(zip(entries, rel)):
        paths.append(root / r)
        for s in e.get("sentences", []):
            captions.append(s["raw"])
            owner.append(i)
    if not captions:
        raise ValueError(f"{path}: no captions in the selected split")
    return paths, captions, owner


def recall_at_k(sim: torch.Tensor, owner: list[int], ks=KS) -> dict[str, float]:
    """sim: (n_images, n_texts) similarities; owner[t] = image of text t. Percentages."""
    owner_t = torch.tensor(owner)
    # text -> image: rank of the true image among all images for each text
    t2i_rank = (sim.T > sim.T.gather(1, owner_t[:, None])).sum(1)  # (T,)
    # image -> text: best rank among the image's own captions
    i2t_rank = torch.full((sim.shape[0],), sim.shape[1], dtype=torch.long)
    order = sim.argsort(dim=1, descending=True)  # (I, T)
    for i in range(sim.shape[0]):
        hits = (owner_t[order[i]] == i).nonzero()
        if len(hits):
            i2t_rank[i] = hits[0, 0]
    out = {}
    for k in ks:
        out[f"i2t_R@{k}"] = 100.0 * (i2t_rank < k).float().mean().item()
        out[f"t2i_R@{k}"] = 100.0 * (t2i_rank < k).float().mean().item()
    return out


def _image(path: Path):
    """A retrieval image, or ValueError naming it (a benchmark image is never silently dropped)."""
    try:
        return load_rgb(path)
    except Exception as e:  # any decoder error, incl. PIL's DecompressionBombError and a missing file
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"cannot read retrieval image {path}: {why}") from None


@torch.no_grad()
def evaluate_retrieval(model, preprocess, tokenizer, paths: list[Path], captions: list[str], owner: list[int],
                       batch_size: int = 64, device: str = "cpu") -> dict[str, float]:
    """Encode with the open_clip API (`encode_image` / `encode_text`) and score R@1/5/10 both ways."""
    img, txt = [], []
    for i in range(0, len(paths), batch_size):
        x = torch.stack([preprocess(_image(p)) for p in paths[i : i + batch_size]]).to(device)
        img.append(F.normalize(model.encode_image(x).float(), dim=-1))
    for i in range(0, len(captions), batch_size):
        txt.append(F.normalize(model.encode_text(tokenizer(captions[i : i + batch_size]).to(device)).float(), dim=-1))
    sim = torch.cat(img) @ torch.cat(txt).T  # (I, T)
    return {**recall_at_k(sim.cpu(), owner), "n_images": len(paths), "n_texts": len(captions)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="clips-llava clips eval", epilog=EXAMPLE,
                                description="Zero-shot image/text retrieval R@1/5/10 of an open_clip tower.",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="open_clip export dir, a run dir, or an open_clip name (hf-hub:...)")
    p.add_argument("--data", required=True, help="Karpathy-format JSON, or a synthetic world dir")
    p.add_argument("--images", help="image root (default: the JSON's folder or its parent)")
    p.add_argument("--out", help="write the metrics JSON here")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    prog = "clips-llava clips eval"
    try:
        paths, captions, owner = load_karpathy(args.data, args.images)
        if args.out and Path(args.out).is_dir():
            raise ValueError(f"--out {args.out}: is a directory; give the metrics JSON file to write")
    except (FileNotFoundError, ValueError, KeyError) as e:
        if debug_enabled():
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    from clips_tower.export import load_open_clip

    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        model, preprocess, tokenizer = load_open_clip(args.model, device=device)
        metrics = evaluate_retrieval(model, preprocess, tokenizer, paths, captions, owner, args.batch_size, device)
    except (FileNotFoundError, ValueError) as e:
        if debug_enabled():
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    metrics = {"model": str(args.model), "data": str(args.data), **metrics}
    print(" ".join(f"{k}={v:.1f}" for k, v in metrics.items() if "R@" in k))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(metrics, indent=1) + "\n")
    return 0
