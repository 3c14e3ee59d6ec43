"""LLaVA-1.5 conversation data: validated samples, counted skips, padding collator.

(Packing: `llava_train.packing`; precomputed tower features: `llava_train.feature_cache`.)

    from llava_train.data import LlavaDataset, LlavaCollator
    ds = LlavaDataset("llava_v1_5_mix665k.json", "images/", processor, template="vicuna_v1",
                      model_max_length=2048)
    print(ds.skips.report())

Reads the LLaVA-1.5 JSON unchanged (`id`, optional `image` relative to the image folder,
`conversations`), text-only and multi-turn samples included. Every sample is validated as it is
built; a bad one is skipped and counted by reason (SKIP_REASONS), and above
`max_bad_sample_fraction` the dataset refuses to start with an error naming the reasons. Nothing
is ever truncated through image tokens and no sample is kept with all labels masked.
"""
from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from clips_tower.images import load_rgb, open_image
from llava_train.templates import IMAGE, TemplateError, get_template

log = logging.getLogger(__name__)
IGNORE_INDEX = -100

SKIP_REASONS = {
    "missing_image": "the image file does not exist",
    "corrupt_image": "the image does not decode",
    "image_token_count": "number of <image> tokens differs from the number of images (0 or 1)",
    "bad_conversation": "roles out of order or no gpt turn for the template",
    "no_labels": "every label is masked (nothing to learn)",
    "too_long": "longer than model_max_length (image tokens are never truncated)",
}


class SkipCounter:
    """Skipped samples by reason, with the first few offending ids."""

    def __init__(self, keep_ids: int = 5):
        self.counts: Counter = Counter()
        self.ids: dict[str, list] = {}
        self.keep_ids = keep_ids

    def add(self, reason: str, sample_id) -> None:
        assert reason in SKIP_REASONS, reason
        self.counts[reason] += 1
        self.ids.setdefault(reason, [])
        if len(self.ids[reason]) < self.keep_ids:
            self.ids[reason].append(sample_id)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def report(self) -> str:
        if not self.total:
            return "bad samples: none"
        parts = [f"{r}={n} (first ids: {self.ids[r]})" for r, n in sorted(self.counts.items())]
        return f"bad samples: {self.total} skipped: " + "; ".join(parts)

    def as_dict(self) -> dict:
        return {"total": self.total, "counts": dict(self.counts), "first_ids": self.ids}


class TooManyBadSamples(ValueError):
    pass


def _decodes(path: Path) -> bool:
    try:
        open_image(path)
        return True
    except Exception:  # any decoder error means the same thing here: unusable image
        return False


class LlavaDataset(torch.utils.data.Dataset):
    """Tokenized, validated LLaVA-1.5 samples; images are decoded and processed on access."""

    def __init__(self, data_path, image_folder, processor, template: str, model_max_length: int,
                 max_bad_sample_fraction: float = 0.01, check_images: bool = True, num_threads: int = 4):
        self.image_folder = Path(image_folder) if image_folder else None
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.template = get_template(template)
        self.model_max_length = model_max_length
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE)
        self.num_image_tokens = self._num_image_tokens(processor)
        self.skips = SkipCounter()
        self.image_rows: dict[Path, int] | None = None  # set by llava_train.feature_cache.attach
        raw = json.loads(Path(data_path).read_text(encoding="utf-8"))
        images = self._check_images(raw, check_images, num_threads)
        self.samples: list[dict] = []
        for rec, image in zip(raw, images):
            sample = self._build(rec, image)
            if sample is not None:
                self.samples.append(sample)
        frac = self.skips.total / max(1, len(raw))
        log.info("%s: %d samples kept of %d; %s", data_path, len(self.samples), len(raw), self.skips.report())
        if frac > max_bad_sample_fraction or not self.samples:
            raise TooManyBadSamples(
                f"{data_path}: {self.skips.total}/{len(raw)} bad samples ({frac:.1%}) exceeds "
                f"max_bad_sample_fraction={max_bad_sample_fraction}; {self.skips.report()}")

    @staticmethod
    def _num_image_tokens(processor) -> int:
        ip = processor.image_processor
        size = ip.size.get("height") or ip.size.get("shortest_edge")
        if getattr(ip, "do_center_crop", False) and ip.crop_size:
            size = ip.crop_size["height"]
        n = (size // processor.patch_size) ** 2 + processor.num_additional_image_tokens
        return n - (1 if processor.vision_feature_select_strategy == "default" else 0)

    def _check_images(self, raw: list[dict], decode: bool, num_threads: int) -> list:
        """Per record: a Path, None (text-only), or a skip reason string."""
        def check(rec):
            if "image" not in rec:
                return None
            if self.image_folder is None:
                return "missing_image"
            path = self.image_folder / rec["image"]
            if not path.is_file():
                return "missing_image"
            return path if not decode or _decodes(path) else "corrupt_image"
        with ThreadPoolExecutor(num_threads) as pool:
            return list(pool.map(check, raw))

    def _build(self, rec: dict, image) -> dict | None:
        sid = rec.get("id")
        if isinstance(image, str):
            self.skips.add(image, sid)
            return None
        conversations = rec.get("conversations") or []
        n_image = sum(str(t.get("value", "")).count(IMAGE) for t in conversations)
        if n_image != (0 if image is None else 1):
            self.skips.add("image_token_count", sid)
            return None
        try:
            text, spans = self.template.render(conversations, self.tokenizer)
        except TemplateError:
            self.skips.add("bad_conversation", sid)
            return None
        enc = self.tokenizer(text, return_offsets_mapping=True)
        ids, labels = [], []
        for tok, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]):
            # A token is learned iff its last character lies inside an assistant span.
            target = e > s and any(a < e <= b for a, b in spans) and tok != self.image_token_id
            if tok == self.image_token_id:  # expand the placeholder to one token per feature
                ids += [tok] * self.num_image_tokens
                labels += [IGNORE_INDEX] * self.num_image_tokens
            else:
                ids.append(tok)
                labels.append(tok if target else IGNORE_INDEX)
        if all(lab == IGNORE_INDEX for lab in labels):
            self.skips.add("no_labels", sid)
            return None
        if len(ids) > self.model_max_length:
            self.skips.add("too_long", sid)
            return None
        return {"id": sid, "input_ids": ids, "labels": labels, "image": image}

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def modality_lengths(self) -> list[int]:
        """LLaVA-1.5 convention: +length for samples with an image, -length for text-only."""
        return [len(s["input_ids"]) * (1 if s["image"] is not None else -1) for s in self.samples]

    def image_pixels(self, path: Path) -> torch.Tensor:
        image = load_rgb(path)
        return self.processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    @property
    def image_paths(self) -> list[Path]:
        """The distinct images of the kept samples, in first-use order."""
        return list(dict.fromkeys(s["image"] for s in self.samples if s["image"] is not None))

    def __getitem__(self, i: int) -> dict:
        s = self.samples[i]
        item = {"input_ids": torch.tensor(s["input_ids"]), "labels": torch.tensor(s["labels"])}
        if s["image"] is not None and self.image_rows is not None:
            item["image_row"] = self.image_rows[s["image"]]  # precomputed tower features: no decoding
        elif s["image"] is not None:
            item["pixel_values"] = self.image_pixels(s["image"])  # (3, H, W)
        return item


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
        extra = self.num_image_tokens if not images and not image_rows and self.image_shape is not None else 0
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
            if self.cached_features:
                image_rows = [0]  # row 0 of a feature cache holds the zero image's features
            else:
                images = [torch.zeros(self.image_shape)]
        if images:
            out["pixel_values"] = torch.stack(images)  # (N_images, 3, H, W)
        if image_rows:
            out["image_rows"] = torch.tensor(image_rows, dtype=torch.long)  # (N_images,) feature-cache rows
        return out
