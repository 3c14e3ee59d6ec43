"""Benchmark: LLaVA data start-up at mix665k scale, ours vs a LLaVA-1.5-style lazy dataset, same run.

    python scripts/bench_data_startup.py --records 665000 --images 2000 --out runs/bench_data
    python scripts/bench_data_startup.py --records 665000 --images 2000 --out runs/bench_data --train-step

Writes a mix665k-shaped JSON (LLaVA-1.5's `llava_v1_5_mix665k.json`: about 94% of the records with an
image, multi-turn conversations, a long text-only share, ids a mix of int and str, an unknown
`model` key on some records) over K real-size JPEGs (640x480), and a processor with a
ViT-L/14-336-shaped tower's 576 image tokens. Then, each in a fresh process so that peak RSS is its
own, it measures the time from start to the first batch and the data side's peak RSS (peak minus the
RSS after imports) for:
- `ours`: `llava_train.data.LlavaDataset` (streams the JSON once into a memory-mapped index, then
  tokenizes in `__getitem__`), the first start (builds the index) and a second start (index built:
  what every other rank, restart and resume pays);
- `llava15`: LLaVA-1.5's LazySupervisedDataset shape: `json.load` of the whole list in the process,
  word-count lengths for `group_by_modality_length`, tokenization in `__getitem__` (with our builder,
  so both produce the same tensors).
Both draw the first batch through a DataLoader with LLaVA-1.5's modality-length grouping. It prints
both and their ratios. `--train-step` also times `clips-llava llava train` from launch to the end of
its first optimizer step on the same JSON, with a ViT-L/14-336-shaped tower (random weights) and a
tiny LM, one process on this machine.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGE_TOKENS = 576  # image_seq_length of the ViT-L/14-336-shaped tower make_processor stands for
SOURCES = [  # (share of mix665k, image dir, turns, words per turn): LLaVA-1.5's mix, roughly
    (0.547, "coco/train2017", (2, 10), (8, 60)),
    (0.130, "vg/VG_100K", (4, 20), (3, 12)),
    (0.108, "gqa/images", (4, 20), (3, 10)),
    (0.120, "ocr_vqa/images", (6, 12), (3, 10)),
    (0.033, "textvqa/train_images", (2, 2), (4, 12)),
    (0.061, None, (2, 6), (40, 400)),  # text-only (ShareGPT)
]
WORDS = ("the a of and to in is it that on for with as was at by an be this from or are which image "
         "picture shows man woman dog cat red blue green left right top bottom table street car sign "
         "what where how many color there two three people standing sitting holding white black").split()


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_world(out: Path, records: int, images: int, seed: int = 0) -> Path:
    """K JPEGs of 640x480 and a mix665k-shaped JSON referring to them; returns the JSON path."""
    import numpy as np
    from PIL import Image

    rng = random.Random(seed)
    data = out / "llava_v1_5_mix665k.json"
    if data.is_file() and json.loads((out / "bench_meta.json").read_text()) == [records, images, seed]:
        return data
    names = []
    np_rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:480, 0:640]
    for k in range(images):
        src = SOURCES[k % 5][1]
        name = f"{src}/{k:012d}.jpg"
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            base = np.stack([(xx * (c + 1) + yy * (k % 7 + 1)) % 256 for c in range(3)], -1)
            noise = np_rng.integers(0, 40, (480, 640, 3))
            Image.fromarray((base + noise).clip(0, 255).astype(np.uint8)).save(path, quality=90)
        names.append(name)
    weights = [s[0] for s in SOURCES]
    with open(data, "w") as f:
        f.write("[")
        for i in range(records):
            share, src, (t0, t1), (w0, w1) = rng.choices(SOURCES, weights)[0]
            turns = rng.randint(t0, t1) // 2 * 2 or 2
            conv = [{"from": "human" if t % 2 == 0 else "gpt",
                     "value": " ".join(rng.choices(WORDS, k=rng.randint(w0, w1)))} for t in range(turns)]
            rec = {"id": i if i % 3 else f"{i:09d}", "conversations": conv}
            if src is not None:
                conv[0]["value"] = "<image>\n" + conv[0]["value"]
                rec["image"] = names[rng.randrange(len(names))]
            if i % 11 == 0:
                rec["model"] = "gpt-4"  # an unknown key, as in parts of the real mix
            f.write(("," if i else "") + "\n" + json.dumps(rec))
        f.write("\n]\n")
    (out / "bench_meta.json").write_text(json.dumps([records, images, seed]))
    return data


def make_processor(out: Path) -> Path:
    """A LlavaProcessor with a ViT-L/14-336-shaped tower's preprocessing (576 image tokens) and a BPE tokenizer."""
    target = out / "processor"
    if (target / "processor_config.json").is_file():
        return target
    from transformers import CLIPImageProcessor, LlavaProcessor

    from llava_train.lm.build import train_tokenizer
    from llava_train.model import add_llava_tokens

    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(" ".join(random.Random(i).choices(WORDS, k=20)) for i in range(2000)))
    tok = train_tokenizer(corpus, 1000)
    add_llava_tokens(tok)
    ip = CLIPImageProcessor(size={"height": 336, "width": 336}, do_center_crop=False, resample=2,
                            image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    LlavaProcessor(image_processor=ip, tokenizer=tok, patch_size=14, vision_feature_select_strategy="default",
                   num_additional_image_tokens=1, chat_template="").save_pretrained(target)
    return target


# ---------------------------------------------------------------- measured in a child process
def _child(kind: str, data: Path, processor_dir: Path, index_dir: Path) -> dict:
    import torch
    from transformers import AutoProcessor

    from llava_train.data import LlavaCollator, LlavaDataset
    from llava_train.samples import SampleBuilder
    from llava_train.sampler import ModalityLengthSampler

    processor = AutoProcessor.from_pretrained(processor_dir)
    base_rss = _rss_mb()
    t0 = time.perf_counter()
    if kind == "ours":
        ds = LlavaDataset(data, data.parent, processor, "vicuna_v1", 2048, max_bad_sample_fraction=1.0,
                          index_dir=index_dir, image_seq_length=IMAGE_TOKENS)
        lengths = ds.modality_lengths
    else:
        ds = Llava15StyleDataset(data, data.parent, processor, SampleBuilder(
            processor.tokenizer, "vicuna_v1", IMAGE_TOKENS, 2048))
        lengths = ds.modality_lengths
    t_ready = time.perf_counter() - t0
    sampler = ModalityLengthSampler(lengths, batch_size=16, world_size=1, seed=0)
    collator = LlavaCollator(processor.tokenizer.pad_token_id, ds.image_token_id, IMAGE_TOKENS, (3, 336, 336))
    loader = torch.utils.data.DataLoader(ds, batch_size=16, sampler=sampler, collate_fn=collator)
    batch = next(iter(loader))
    t_batch = time.perf_counter() - t0
    return {"kind": kind, "records": len(ds), "ready_s": round(t_ready, 2), "first_batch_s": round(t_batch, 2),
            "data_rss_mb": round(_peak_mb() - base_rss), "batch_tokens": int(batch["input_ids"].numel())}


class Llava15StyleDataset:
    """LLaVA-1.5's LazySupervisedDataset, in shape: the whole JSON in memory, tokenize on access."""

    def __init__(self, data, image_folder, processor, builder):
        self.records = json.load(open(data))
        self.image_folder, self.processor, self.builder = Path(image_folder), processor, builder
        self.image_token_id = builder.image_token_id

    def __len__(self):
        return len(self.records)

    @property
    def modality_lengths(self):  # LLaVA-1.5: word counts, negative for text-only
        out = []
        for rec in self.records:
            n = sum(len(c["value"].split()) for c in rec["conversations"])
            out.append(n if "image" in rec else -n)
        return out

    def __getitem__(self, i):
        import torch
        from PIL import Image

        rec = self.records[i]
        s = self.builder.build(rec)
        item = {"input_ids": torch.tensor(s["input_ids"]), "labels": torch.tensor(s["labels"])}
        if "image" in rec:
            image = Image.open(self.image_folder / rec["image"]).convert("RGB")
            item["pixel_values"] = self.processor.image_processor(image, return_tensors="pt")["pixel_values"][0]
        return item


def _measure(kind: str, data: Path, processor_dir: Path, index_dir: Path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    code = (f"import json, sys; sys.path.insert(0, {str(REPO)!r}); sys.argv = ['x'];"
            f"from scripts.bench_data_startup import _child;"
            f"from pathlib import Path; print('RESULT', json.dumps(_child({kind!r}, Path({str(data)!r}), "
            f"Path({str(processor_dir)!r}), Path({str(index_dir)!r}))))")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{kind} failed:\n{r.stderr[-3000:]}")
    return json.loads(line[7:])


def train_step(out: Path, data: Path) -> float:
    """Seconds from launching `clips-llava llava train` to the end of its first optimizer step."""
    from clips_tower.adapter import export_tower
    from llava_train.lm import init_lm
    from llava_train.model import assemble_llava

    init = out / "llava-l14-336"
    if not (init / "config.json").is_file():
        tower = export_tower(str(REPO / "configs/clips/models/ViT-L-14-CLIPS-336.json"), out / "tower-l14-336",
                             random_init=True)
        lm = init_lm(out / "corpus.txt", out / "lm", preset="tiny")
        assemble_llava(tower, lm, init, template="vicuna_v1")
    cmd = [sys.executable, "-m", "llava_train.train", "--model_name_or_path", str(init), "--data_path", str(data),
           "--image_folder", str(data.parent), "--output_dir", str(out / "train"), "--stage", "stage2",
           "--template", "vicuna_v1", "--per_device_train_batch_size", "2", "--max_steps", "1",
           "--group_by_modality_length", "true", "--logging_steps", "1", "--save_strategy", "no",
           "--report_to", "none", "--disable_tqdm", "true", "--dataloader_num_workers", "0",
           "--model_max_length", "2048", "--data_index_dir", str(out / "train-index")]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    first = None
    tail = []
    for line in proc.stdout:
        tail = (tail + [line])[-30:]
        if first is None and "'loss'" in line:
            first = time.perf_counter() - t0
    proc.wait()
    if proc.returncode != 0 or first is None:
        raise SystemExit("train step failed:\n" + "".join(tail))
    return first


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="example:\n  python scripts/bench_data_startup.py --records 665000 --images 2000",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=665_000)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--out", default="runs/bench_data")
    p.add_argument("--train-step", action="store_true", help="also time launch -> end of the first optimizer step")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    data = write_world(out, args.records, args.images)
    processor_dir = make_processor(out)
    print(f"data: {args.records} records over {args.images} JPEGs (640x480), {data.stat().st_size / 2**20:.0f} MiB "
          f"JSON, written in {time.perf_counter() - t:.0f} s")
    index_dir = out / "index"
    if index_dir.exists():
        import shutil

        shutil.rmtree(index_dir)
    first = _measure("ours", data, processor_dir, index_dir)
    again = _measure("ours", data, processor_dir, index_dir)
    base = _measure("llava15", data, processor_dir, index_dir)
    rows = [("ours, first start (builds the index)", first), ("ours, index built (other ranks, resume)", again),
            ("LLaVA-1.5-style lazy baseline", base)]
    print(f"{'':<42}{'ready s':>9}{'first batch s':>15}{'data RSS MB':>13}")
    for name, r in rows:
        print(f"{name:<42}{r['ready_s']:>9}{r['first_batch_s']:>15}{r['data_rss_mb']:>13}")
    print(f"ratio baseline/ours, time to first batch: first start {base['first_batch_s'] / first['first_batch_s']:.2f}x,"
          f" index built {base['first_batch_s'] / again['first_batch_s']:.2f}x; data RSS "
          f"{base['data_rss_mb'] / max(1, first['data_rss_mb']):.1f}x (first), "
          f"{base['data_rss_mb'] / max(1, again['data_rss_mb']):.1f}x (index built)")
    if args.train_step:
        print(f"launch -> end of first optimizer step (ViT-L/14-336-shaped tower, 576 image tokens, "
              f"{args.records} records, 1 process): {train_step(out, data):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
