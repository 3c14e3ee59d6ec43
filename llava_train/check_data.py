"""`clips-llava llava check-data`: the up-front full pass over a LLaVA-1.5 JSON, with `llava train`'s arguments.

    clips-llava llava check-data --config configs/llava/stage2_tiny.yaml --model_name_or_path runs/lm \
        --vision_tower runs/tower --data_path runs/world/llava/stage2.json \
        --image_folder runs/world/llava/images --output_dir runs/stage2 \
        --workers 2 --show 2 --report runs/check.json --write-clean runs/stage2.clean.json

Does everything `llava train` does up to the first step, without training: assembles (or loads) the
processor, builds the data index, then decodes every image and renders, tokenizes and labels every
sample in `--workers` processes, exactly as training builds them (`llava_train.samples`). It prints
the bad samples by reason with the first ids, a histogram of the token lengths (image tokens
included) against `model_max_length`, and `--show N` rendered samples with the learned tokens
marked ⟦like this⟧, so a user sees exactly what is learned: this is where a "tokenization
mismatch" shows up before a run. `--report` writes the counts as JSON; `--write-clean` writes the
input without its bad records (same order). Exit 0 whenever the data could be read, whatever was
found; exit 2 with one line when it could not.
"""
from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import sys
from pathlib import Path

from clips_tower.flags import renamed
from clips_tower.io import atomic_open
from llava_train.samples import IGNORE_INDEX, SKIP_REASONS, BadSample

log = logging.getLogger(__name__)
_DATASET = None  # the dataset, inherited by forked workers


def _own_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="clips-llava llava check-data", add_help=False)
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    p.add_argument("--show", type=int, default=0)
    p.add_argument("--report")
    p.add_argument("--write-clean")
    return p.parse_known_args(renamed(argv, {"--write_clean": "--write-clean"}, p.prog))  # old spelling, one release


def _check_chunk(positions: list[int]) -> list[tuple[int, str | None, int]]:
    """(dataset position, bad reason or None, token length) for each position: build + decode the image."""
    from llava_train.data import load_image

    out = []
    for i in positions:
        try:
            s = _DATASET.sample(i)
            if s["image"] is not None:
                load_image(s["image"])
            out.append((i, None, len(s["input_ids"])))
        except BadSample as e:
            out.append((i, e.reason, 0))
    return out


def scan(dataset, workers: int = 1, progress: bool = True) -> dict:
    """Build every usable sample of `dataset` (and decode its image); returns per-position results."""
    global _DATASET
    from tqdm.auto import tqdm

    _DATASET = dataset
    n = len(dataset)
    step = max(1, min(256, n // (workers * 8) or 1))
    chunks = [list(range(k, min(n, k + step))) for k in range(0, n, step)]
    results = []
    bar = tqdm(total=n, desc="check-data", unit="sample", disable=not progress, file=sys.stderr)
    if workers > 1 and n > step:
        with mp.get_context("fork").Pool(workers) as pool:
            for part in pool.imap(_check_chunk, chunks):
                results += part
                bar.update(len(part))
    else:
        for chunk in chunks:
            part = _check_chunk(chunk)
            results += part
            bar.update(len(part))
    bar.close()
    return {i: (reason, length) for i, reason, length in results}


def histogram(lengths: list[int], max_len: int, bins: int = 8) -> list[dict]:
    width = max(1, -(-max_len // bins))
    rows = [{"from": k * width, "to": min(max_len, (k + 1) * width), "count": 0} for k in range(bins)]
    for n in lengths:
        rows[min(bins - 1, max(0, (n - 1) // width))]["count"] += 1
    return rows


def render_marked(dataset, i: int) -> str:
    """Sample i's tokens as text, learned runs in ⟦...⟧ and the image tokens collapsed to <image>xN."""
    s = dataset.sample(i)
    tok, image_id = dataset.tokenizer, dataset.image_token_id
    pieces, run, learned = [], [], None

    def flush():
        if run:
            text = tok.decode(run)
            pieces.append(f"⟦{text}⟧" if learned else text)

    ids, labels = s["input_ids"], s["labels"]
    k = 0
    while k < len(ids):
        if ids[k] == image_id:
            flush()
            run, learned = [], None
            n = 0
            while k < len(ids) and ids[k] == image_id:
                n, k = n + 1, k + 1
            pieces.append(f"<image>x{n}")
            continue
        is_learned = labels[k] != IGNORE_INDEX
        if learned is not None and is_learned != learned:
            flush()
            run = []
        run.append(ids[k])
        learned = is_learned
        k += 1
    flush()
    return "".join(pieces)


def write_clean(index, keep_positions: set[int], out: Path) -> int:
    """The input's records without the bad ones, in the input's order, as a JSON list (atomic write)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with atomic_open(out, "w", encoding="utf-8") as f:
        f.write("[")
        for pos in range(len(index)):
            if pos in keep_positions:
                f.write(("," if n else "") + "\n" + json.dumps(index.record(pos), ensure_ascii=False))
                n += 1
        f.write("\n]\n")
    return n


def check(argv: list[str]) -> int:
    own, rest = _own_args(argv)
    from llava_train.train import check_inputs, parse_args

    given = {a.split("=", 1)[0].replace("-", "_") for a in rest if a.startswith("--")}  # HfArgumentParser takes both spellings
    for flag, value in (("--deepspeed", ""), ("--use_cpu", "true"), ("--report_to", "none")):
        if flag.replace("-", "_") not in given:
            rest += [flag, value]  # a data pass: one process, no DeepSpeed
    margs, dargs, targs = parse_args(rest)
    check_inputs(margs, dargs, targs)
    from llava_train.model import image_seq_length
    from llava_train.run import build_dataset, load_processor, prepare_init
    from llava_train.skips import SkipCounter

    init = prepare_init(margs, dargs, targs)
    processor = load_processor(init, dargs)
    dargs.max_bad_sample_fraction = 1.0  # report everything; never refuse
    dataset = build_dataset(dargs, targs, processor, image_seq_length(init), allow_empty=True)
    results = scan(dataset, own.workers)
    skips = SkipCounter()
    skips.merge(dataset.startup_skips.counts, dataset.startup_skips.ids)
    kept, lengths = set(), []
    for i, (reason, length) in sorted(results.items()):
        if reason is None:
            kept.add(int(dataset.positions[i]))
            lengths.append(length)
        else:
            skips.add(reason, dataset.record(i).get("id"))
    max_len = targs.model_max_length
    hist = histogram(lengths, max_len)
    print(f"{dargs.data_path}: {len(dataset.index)} records, {len(kept)} kept, {skips.total} bad")
    for reason, n in sorted(skips.counts.items()):
        print(f"  {reason:<26} {n:>8}  {SKIP_REASONS[reason]}; first ids: {skips.ids.get(reason, [])}")
    if lengths:
        print(f"token lengths (image tokens included), model_max_length {max_len}: "
              f"min {min(lengths)}, mean {sum(lengths) / len(lengths):.1f}, max {max(lengths)}")
        top = max(r["count"] for r in hist) or 1
        for r in hist:
            print(f"  {r['from']:>6}-{r['to']:<6} {r['count']:>8} {'#' * round(40 * r['count'] / top)}")
        print(f"  >{max_len:<12} {skips.counts.get('too_long', 0):>8} (skipped: too_long)")
    shown = [i for i, (reason, _) in sorted(results.items()) if reason is None][:own.show]
    for i in shown:
        print(f"--- sample {dataset.record(i).get('id')!r} ({results[i][1]} tokens; learned tokens in ⟦⟧) ---")
        print(render_marked(dataset, i))
    if own.report:
        report = {"records": len(dataset.index), "kept": len(kept), "bad": dict(skips.counts),
                  "first_ids": skips.ids, "model_max_length": max_len, "length_histogram": hist,
                  "max_length": max(lengths, default=0), "template": dargs.template,
                  "image_aspect_ratio": dargs.image_aspect_ratio}
        Path(own.report).parent.mkdir(parents=True, exist_ok=True)
        Path(own.report).write_text(json.dumps(report, indent=1))
    if own.write_clean:
        n = write_clean(dataset.index, kept, Path(own.write_clean))
        print(f"wrote {n} records to {own.write_clean}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from llava_train.data_index import DataFileError
    from llava_train.skips import TooManyBadSamples

    try:
        return check(argv)
    except (DataFileError, TooManyBadSamples, OSError, ValueError) as e:
        from llava_train.errors import report

        return report("clips-llava llava check-data", e)


if __name__ == "__main__":
    sys.exit(main())
