"""LLaVA-1.5 conversation data, lazily built: memory-mapped index, per-item tokenization, bad-sample replacement.

(Packing: `llava_train.packing`; precomputed tower features: `llava_train.feature_cache`; the
up-front full pass: `llava_train.check_data`.)

    from llava_train.data import LlavaDataset, LlavaCollator
    ds = LlavaDataset("llava_v1_5_mix665k.json", "playground/data", processor, template="vicuna_v1",
                      model_max_length=2048, index_dir="runs/stage2/data_index",
                      image_seq_length=image_seq_length("runs/stage2/init"))  # llava_train.model
    item = ds[0]   # input_ids, labels, pixel_values (or image_row), bad_samples

Each `<image>` becomes `image_seq_length` tokens: the Llava model's `config.image_seq_length`, the
number the tower's `llava` block records (never derived here).

Reads the LLaVA-1.5 JSON unchanged (`id`, optional `image` relative to the image folder,
`conversations`), text-only and multi-turn samples included, with LLaVA-1.5's data semantics
(`llava_train.samples`). Start-up only opens the memory-mapped index (`llava_train.data_index`,
built once); nothing is tokenized and no image is decoded before step 1, as in LLaVA-1.5's lazy
dataset. Records that are structurally bad are left out at start-up, counted by reason; above
`max_bad_sample_fraction` of the records the dataset refuses to start. A sample that turns out bad
when it is built (missing or undecodable image, too long, nothing to learn) is replaced by another
sample chosen deterministically from its index, so the data order and the losses are the same
after `--resume_from_checkpoint`; the item reports what it replaced (`bad_samples`), and
`llava_train.skips.BadSampleTracker` counts it and stops the run above the fraction. A sample
is never trained on with a placeholder image or with all labels masked.
"""
from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch

from clips_tower.images import load_rgb
from llava_train.data_index import DataIndex, DataFileError  # noqa: F401  (re-exported for callers)
from llava_train.samples import IGNORE_INDEX, BadSample, SampleBuilder
from llava_train.skips import SkipCounter, TooManyBadSamples
from llava_train.templates import IMAGE

log = logging.getLogger(__name__)
MAX_REPLACEMENTS = 64


def load_image(path: Path) -> "Image":  # noqa: F821
    """Decode an image file as a sample needs it; BadSample('missing_image' | 'corrupt_image') otherwise."""
    if not path.is_file():
        raise BadSample("missing_image", str(path))
    try:
        return load_rgb(path)
    except Exception as e:  # any decoder error (incl. PIL's DecompressionBombError) means: unusable image
        raise BadSample("corrupt_image", f"{path}: {type(e).__name__}: {e}") from None


class LlavaDataset(torch.utils.data.Dataset):
    """Lazily tokenized LLaVA-1.5 samples over a memory-mapped index; see the module docstring."""

    def __init__(self, data_path, image_folder, processor, template: str, model_max_length: int,
                 max_bad_sample_fraction: float = 0.01, index_dir: str | Path | None = None,
                 allow_empty: bool = False, *, image_seq_length: int):
        self.data_path = Path(data_path)
        self.image_folder = Path(image_folder) if image_folder else None
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.num_image_tokens = image_seq_length  # the Llava config's image_seq_length
        self.builder = SampleBuilder(self.tokenizer, template, self.num_image_tokens, model_max_length)
        self.image_token_id = self.builder.image_token_id
        self.index = DataIndex.open_or_build(self.data_path, index_dir or self.data_path.parent / ".data_index")
        self.positions = self.index.valid  # (K,) record positions of the usable records
        self.startup_skips = SkipCounter()
        self.startup_skips.merge(self.index.bad_counts, self.index.first_bad_ids)
        self.image_rows: dict[Path, int] | None = None  # set by llava_train.feature_cache.build_feature_cache
        self.image_bad: dict[Path, str] = {}            # images the feature cache could not decode
        n = len(self.index)
        log.info("%s: %d records, %d usable; %s", data_path, n, len(self.positions), self.startup_skips.report())
        if not len(self.positions) and not allow_empty:
            raise TooManyBadSamples(f"{data_path}: none of its {n} records is usable: {self.startup_skips.report()}")
        if self.startup_skips.total > max_bad_sample_fraction * n:
            raise TooManyBadSamples(
                f"{data_path}: {self.startup_skips.total}/{n} records are bad "
                f"({self.startup_skips.total / n:.1%}), more than max_bad_sample_fraction="
                f"{max_bad_sample_fraction}; {self.startup_skips.report()}")

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def modality_lengths(self) -> list[int]:
        """LLaVA-1.5's estimate: word count (+ image tokens) with an image, negative text-only."""
        words = np.asarray(self.index.words)[self.positions].astype(np.int64)
        img = np.asarray(self.index.has_image)[self.positions]
        return np.where(img, words + self.num_image_tokens, -np.maximum(words, 1)).tolist()

    def record(self, i: int) -> dict:
        return self.index.record(self.positions[i])

    def image_path(self, rec: dict) -> Path:
        if self.image_folder is None:
            raise BadSample("missing_image", "the record has an image but no image_folder was given")
        return self.image_folder / rec["image"]

    def sample(self, i: int) -> dict:
        """The i-th sample without its image: {"id", "input_ids", "labels", "image": Path | None}, or BadSample."""
        rec = self.record(i)
        s = self.builder.build(rec)
        s["image"] = self.image_path(rec) if s["image"] is not None else None
        return s

    def image_pixels(self, path: Path) -> torch.Tensor:
        return self.processor.image_processor(images=load_image(path), return_tensors="pt")["pixel_values"][0]

    @property
    def image_paths(self) -> list[Path]:
        """The distinct images of the usable records, in first-use order (reads every record once)."""
        paths = (self.image_path(r) for r in map(self.record, range(len(self))) if "image" in r)
        return list(dict.fromkeys(paths))

    def load(self, i: int) -> dict:
        """The training item of sample i (tensors), or BadSample."""
        s = self.sample(i)
        item = {"input_ids": torch.tensor(s["input_ids"]), "labels": torch.tensor(s["labels"])}
        if s["image"] is not None and self.image_rows is not None:
            if s["image"] not in self.image_rows:  # precomputed tower features: no decoding
                raise BadSample(self.image_bad.get(s["image"], "missing_image"), str(s["image"]))
            item["image_row"] = self.image_rows[s["image"]]
        elif s["image"] is not None:
            item["pixel_values"] = self.image_pixels(s["image"])  # (3, H, W)
        return item

    def replacement(self, i: int, attempt: int) -> int:
        """The index tried instead of sample i after `attempt` bad draws: a function of (i, attempt) only."""
        return random.Random(i * 1_000_003 + attempt).randrange(len(self))

    def __getitem__(self, i: int) -> dict:
        bad, j = [], i
        for attempt in range(MAX_REPLACEMENTS + 1):
            try:
                item = self.load(j)
                item["bad_samples"] = bad
                return item
            except BadSample as e:
                rec_id = self.record(j).get("id")
                bad.append((e.reason, rec_id))
                log.debug("sample %s is bad (%s); replacing it", rec_id, e)
                j = self.replacement(i, attempt + 1)
        raise TooManyBadSamples(f"{self.data_path}: {MAX_REPLACEMENTS + 1} bad samples in a row while "
                                f"replacing sample {i}: {bad[:5]} ...")


def batch_bad_samples(batch: list[dict]) -> dict:
    """The collated `bad_samples` entry: how many items, and every (reason, id) replaced to make them."""
    return {"n": len(batch), "bad": [tuple(x) for b in batch for x in b.get("bad_samples", ())]}


def zero_image_tokens(has_image: bool, num_image_tokens: int, image_shape) -> int:
    """`<image>` tokens of the stand-in zero image a batch without any image gets (see LlavaCollator):
    all of them when the collator knows the image shape, none for a batch that has images."""
    return num_image_tokens if not has_image and image_shape is not None else 0


def zero_image(image_shape: tuple[int, int, int], cached_features: bool) -> tuple[list[int], list[torch.Tensor]]:
    """The stand-in zero image as (feature-cache rows, pixel tensors): row 0 of a feature cache, which
    holds the zero image's features, or one all-zero (C, H, W) pixel tensor."""
    return ([0], []) if cached_features else ([], [torch.zeros(image_shape)])


def put_images(out: dict, pixels: list[torch.Tensor], image_rows: list[int]) -> dict:
    """Add a batch's images to `out`: `pixel_values` (N, C, H, W) in `<image>` token order, or
    `image_rows` (N,), their feature-cache rows."""
    if pixels:
        out["pixel_values"] = torch.stack(pixels)
    if image_rows:
        out["image_rows"] = torch.tensor(image_rows, dtype=torch.long)
    return out


class LlavaCollator:
    """Right-pads a batch; `pixel_values` stacks the batch's images in order.

    A batch without any image gets one zero image whose tokens sit in masked padding (attention
    mask 0, labels ignored): every rank then runs the tower and projector in the same order, which
    ZeRO-3's parameter gathering needs, and the loss is unchanged.
    """

    def __init__(self, pad_token_id: int, image_token_id: int, num_image_tokens: int,
                 image_shape: tuple[int, int, int] | None = None, pad_to_multiple_of: int | None = None,
                 cached_features: bool = False):
        self.pad_token_id, self.image_token_id = pad_token_id, image_token_id
        self.num_image_tokens, self.image_shape = num_image_tokens, image_shape
        self.pad_to_multiple_of = pad_to_multiple_of
        self.cached_features = cached_features  # items carry `image_row` (feature cache) instead of pixels

    def __call__(self, batch: list[dict]) -> dict:
        images = [b["pixel_values"] for b in batch if "pixel_values" in b]
        image_rows = [b["image_row"] for b in batch if "image_row" in b]
        extra = zero_image_tokens(bool(images or image_rows), self.num_image_tokens, self.image_shape)
        longest = max(len(b["input_ids"]) for b in batch)
        length = max(longest, len(batch[0]["input_ids"]) + extra)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(batch), length), self.pad_token_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            input_ids[i, :n], labels[i, :n], attention_mask[i, :n] = b["input_ids"], b["labels"], 1
        out = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        if extra:
            n = len(batch[0]["input_ids"])
            input_ids[0, n:n + extra] = self.image_token_id
            image_rows, images = zero_image(self.image_shape, self.cached_features)
        put_images(out, images, image_rows)
        out["bad_samples"] = batch_bad_samples(batch)
        return out


__all__ = ["IMAGE", "IGNORE_INDEX", "LlavaDataset", "LlavaCollator", "TooManyBadSamples", "SkipCounter",
           "DataFileError", "BadSample", "load_image", "batch_bad_samples",
           "zero_image_tokens", "zero_image", "put_images"]
