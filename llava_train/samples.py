"""One LLaVA-1.5 record -> one training sample (ids, labels, image path), with LLaVA-1.5's data semantics.

    from llava_train.samples import SampleBuilder, BadSample, check_record
    builder = SampleBuilder(processor.tokenizer, "vicuna_v1", num_image_tokens=576, model_max_length=2048)
    turns = check_record(rec)                  # raises BadSample(reason) for malformed records
    sample = builder.build(rec)                # {"id", "input_ids", "labels", "image"} or BadSample

The semantics of LLaVA-1.5's `preprocess` / `preprocess_multimodal` (haotian-liu/LLaVA
`llava/train/train.py`), applied before any template:
- a leading turn from `gpt` is dropped and the sample kept;
- `<image>` anywhere in its turn is moved to the front of that turn, followed by "\n";
- ids may be int or str; unknown keys (such as `model`) are ignored;
- text-only (no `image` key) and multi-turn samples are kept.

What LLaVA-1.5 would crash on, or silently train wrong, is a bad sample here, counted by reason
(SKIP_REASONS): a record that is not an object, `conversations` that is not a list of objects, a
`value` that is not a string, an `image` that is not a string, roles out of order (after the
leading-gpt rule) or no gpt turn, `<image>` with no `image` key, an `image` key with no
`<image>` in the text, more than one `<image>`; and, when the sample is built, a missing or
undecodable image file, a sample longer than `model_max_length` (image tokens are never
truncated) or one with every label masked.
"""
from __future__ import annotations

from llava_train.templates import IMAGE, TemplateError, get_template

IGNORE_INDEX = -100
ROLES = {"human": "user", "gpt": "assistant"}

SKIP_REASONS = {
    "bad_record": "the record is not an object, or `conversations` is not a list of objects",
    "bad_value": "a turn's `value` is not a string",
    "bad_image_field": "`image` is not a string (a list, a number or null)",
    "bad_roles": "roles out of order after dropping a leading gpt turn, or no gpt turn",
    "image_token_without_image": "`<image>` in the text but no `image` key",
    "image_without_token": "an `image` key but no `<image>` in the text",
    "image_token_count": "more than one `<image>` in the text (one image per sample)",
    "template": "the conversation does not fit the template (e.g. plain with several exchanges)",
    "missing_image": "the image file does not exist",
    "corrupt_image": "the image does not decode (truncated, not an image, decompression bomb, ...)",
    "no_labels": "every label is masked (nothing to learn)",
    "too_long": "longer than model_max_length (image tokens are never truncated)",
}


class BadSample(ValueError):
    """A record that is not trained on; `reason` is a key of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str = ""):
        assert reason in SKIP_REASONS, reason
        super().__init__(f"{reason}: {detail or SKIP_REASONS[reason]}")
        self.reason = reason


def record_id(rec):
    return rec.get("id") if isinstance(rec, dict) else None


def check_record(rec) -> list[tuple[str, str]]:
    """Normalized turns [(user|assistant, text)] of a record, or BadSample. No tokenizer, no file access."""
    if not isinstance(rec, dict) or not isinstance(rec.get("conversations"), list):
        raise BadSample("bad_record")
    conversations = rec["conversations"]
    if not all(isinstance(t, dict) for t in conversations):
        raise BadSample("bad_record")
    if not all(isinstance(t.get("value"), str) for t in conversations):
        raise BadSample("bad_value")
    if "image" in rec and not isinstance(rec["image"], str):
        raise BadSample("bad_image_field")
    if conversations and conversations[0].get("from") == "gpt":
        conversations = conversations[1:]  # LLaVA-1.5: a leading gpt turn is dropped
    turns = []
    for i, turn in enumerate(conversations):
        role = ROLES.get(turn.get("from"))
        if role != ("user" if i % 2 == 0 else "assistant"):
            raise BadSample("bad_roles", f"turn {i} is from {turn.get('from')!r}; expected human/gpt alternating")
        turns.append((role, turn["value"]))
    if not any(role == "assistant" for role, _ in turns):
        raise BadSample("bad_roles", "no gpt turn")
    n_image = sum(value.count(IMAGE) for _, value in turns)
    if n_image and "image" not in rec:
        raise BadSample("image_token_without_image")
    if "image" in rec and not n_image:
        raise BadSample("image_without_token")
    if n_image > 1:
        raise BadSample("image_token_count")
    # LLaVA-1.5's preprocess_multimodal: "<image>" to the front of its turn, then "\n".
    return [(role, (IMAGE + "\n" + value.replace(IMAGE, "").strip()).strip() if IMAGE in value else value)
            for role, value in turns]


def word_count(rec) -> int:
    """LLaVA-1.5's length estimate of a checked record: whitespace words over all turns (the data index
    stores it; `LlavaDataset.modality_lengths` adds the image tokens and the text-only sign)."""
    return sum(len(t["value"].split()) for t in rec["conversations"])


class SampleBuilder:
    """Renders, tokenizes and labels one checked record; expands `<image>` to the tower's token count."""

    def __init__(self, tokenizer, template: str, num_image_tokens: int, model_max_length: int):
        self.tokenizer, self.template = tokenizer, get_template(template)
        self.num_image_tokens, self.model_max_length = num_image_tokens, model_max_length
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE)

    def render(self, rec) -> tuple[str, list[tuple[int, int]]]:
        try:
            return self.template.render(check_record(rec), self.tokenizer)
        except TemplateError as e:
            raise BadSample("template", str(e)) from None

    def build(self, rec) -> dict:
        text, spans = self.render(rec)
        enc = self.tokenizer(text, return_offsets_mapping=True)
        ids, labels = [], []
        for tok, (s, e) in zip(enc["input_ids"], enc["offset_mapping"]):
            if tok == self.image_token_id:  # expand the placeholder to one token per feature
                ids += [tok] * self.num_image_tokens
                labels += [IGNORE_INDEX] * self.num_image_tokens
                continue
            # A token is learned iff its last character lies inside an assistant span.
            ids.append(tok)
            labels.append(tok if e > s and any(a < e <= b for a, b in spans) else IGNORE_INDEX)
        if all(lab == IGNORE_INDEX for lab in labels):
            raise BadSample("no_labels")
        if len(ids) > self.model_max_length:
            raise BadSample("too_long", f"{len(ids)} tokens > model_max_length {self.model_max_length}")
        return {"id": rec.get("id"), "input_ids": ids, "labels": labels, "image": rec.get("image")}
