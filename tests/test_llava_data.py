"""llava_train parts without training: LM init, assembly, templates/labels, bad samples, projector IO.

    pytest -q tests/test_llava_data.py
"""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.llava_helpers import make_lm, make_tower, write_json


@pytest.fixture(scope="module")
def parts(tiny_world, tmp_path_factory):
    from llava_train.model import assemble_llava

    tmp = tmp_path_factory.mktemp("llava_parts")
    tower, lm = make_tower(tmp / "tower"), make_lm(tiny_world, tmp / "lm")
    llava = {t: assemble_llava(tower, lm, tmp / f"llava-{t}", template=t) for t in ("plain", "vicuna_v1", "chat_template")}
    return {"tmp": tmp, "tower": tower, "lm": lm, "llava": llava, "world": tiny_world}


def _dataset(parts, template, data, **kw):
    from transformers import AutoProcessor

    from llava_train.data import LlavaDataset

    processor = AutoProcessor.from_pretrained(parts["llava"][template])
    return LlavaDataset(data, parts["world"] / "llava/images", processor, template, kw.pop("max_len", 512), **kw)


def test_lm_pretrain_learns(parts, tmp_path):
    from llava_train.lm import pretrain_lm

    r = pretrain_lm(parts["lm"], parts["world"], tmp_path / "lm", steps=12, batch_size=8, block_size=64, lr=5e-3)
    assert r["last_loss"] < r["first_loss"] - 0.5


def test_assembled_llava_is_stock_and_expands_image(parts):
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    path = parts["llava"]["vicuna_v1"]
    processor = AutoProcessor.from_pretrained(path)
    model = LlavaForConditionalGeneration.from_pretrained(path)
    tok = processor.tokenizer
    assert tok.pad_token is not None and model.config.image_token_id == tok.convert_tokens_to_ids("<image>")
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is shown?"}]}]
    prompt = processor.apply_chat_template(msgs, add_generation_prompt=True)
    inputs = processor(images=Image.new("RGB", (50, 20), "red"), text=prompt, return_tensors="pt")
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == 16
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


@pytest.mark.parametrize("template", ["plain", "vicuna_v1", "chat_template"])
def test_labels_cover_only_assistant_turns(parts, template):
    from transformers import AutoProcessor

    from llava_train.data import IGNORE_INDEX

    stage = "stage1" if template == "plain" else "stage2"
    ds = _dataset(parts, template, parts["world"] / f"llava/{stage}.json")
    raw = {r["id"]: r for r in json.loads((parts["world"] / f"llava/{stage}.json").read_text())}
    tok = AutoProcessor.from_pretrained(parts["llava"][template]).tokenizer
    for s in ds.samples[:5]:
        learned = tok.decode([t for t, lab in zip(s["input_ids"], s["labels"]) if lab != IGNORE_INDEX])
        answers = [t["value"] for t in raw[s["id"]]["conversations"] if t["from"] == "gpt"]
        assert all(a in learned for a in answers)
        assert sum(len(tok(a, add_special_tokens=False).input_ids) for a in answers) <= len(learned.split(" ")) * 4
        questions = [t["value"].replace("<image>", "").strip() for t in raw[s["id"]]["conversations"] if t["from"] == "human"]
        assert not any(q and q in learned for q in questions)
        assert s["input_ids"].count(tok.convert_tokens_to_ids("<image>")) == (16 if s["image"] else 0)


def test_training_text_matches_processor_prompt(parts):
    # The template's rendered text starts with exactly what the saved processor's chat template produces.
    from transformers import AutoProcessor

    from llava_train.templates import get_template

    processor = AutoProcessor.from_pretrained(parts["llava"]["vicuna_v1"])
    convs = [{"from": "human", "value": "Q1?\n<image>"}, {"from": "gpt", "value": "A1."},
             {"from": "human", "value": "Q2?"}, {"from": "gpt", "value": "A2."}]
    text, _ = get_template("vicuna_v1").render(convs, processor.tokenizer)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q1?"}]},
            {"role": "assistant", "content": "A1."}, {"role": "user", "content": "Q2?"}]
    prompt = processor.apply_chat_template(msgs, add_generation_prompt=True)
    assert text.startswith(prompt) and text[len(prompt):] == " A2." + processor.tokenizer.eos_token


def test_bad_samples_counted_and_fraction_enforced(parts, tmp_path):
    from llava_train.data import TooManyBadSamples

    world = parts["world"]
    images = tmp_path / "images"
    shutil.copytree(world / "llava/images", images)
    good = json.loads((world / "llava/stage2.json").read_text())
    with_image = [r for r in good if "image" in r]
    (images / "corrupt.png").write_bytes((images / with_image[0]["image"]).read_bytes()[:60])
    bad = [
        {**with_image[0], "id": "bad-corrupt", "image": "corrupt.png"},
        {**with_image[1], "id": "bad-missing", "image": "nope.png"},
        {**with_image[2], "id": "bad-two-images", "conversations": [
            {"from": "human", "value": "<image>\n<image>\nCompare."}, {"from": "gpt", "value": "Same."}]},
        {**with_image[3], "id": "bad-overlong", "conversations": [
            {"from": "human", "value": "<image>\nTalk."}, {"from": "gpt", "value": "word " * 400}]},
    ]
    data = write_json(tmp_path / "data.json", good + bad)
    from transformers import AutoProcessor

    from llava_train.data import LlavaDataset

    processor = AutoProcessor.from_pretrained(parts["llava"]["vicuna_v1"])
    ds = LlavaDataset(data, images, processor, "vicuna_v1", 300, max_bad_sample_fraction=0.5)
    assert ds.skips.counts == {"corrupt_image": 1, "missing_image": 1, "image_token_count": 1, "too_long": 1}
    assert ds.skips.ids["corrupt_image"] == ["bad-corrupt"] and len(ds) == len(good)
    assert "bad-overlong" in ds.skips.report()
    with pytest.raises(TooManyBadSamples, match="missing_image"):
        LlavaDataset(data, images, processor, "vicuna_v1", 300, max_bad_sample_fraction=0.01)


def test_projector_roundtrip_llava15_bin(parts, tmp_path):
    from llava_train.projector import LLAVA15_KEYS, read_projector, write_projector

    src = read_projector(parts["llava"]["plain"])
    assert set(src) == set(LLAVA15_KEYS)
    bin_path = write_projector(src, tmp_path / "mm_projector.bin")
    raw = torch.load(bin_path, weights_only=True)
    assert set(raw) == set(LLAVA15_KEYS.values())
    back = read_projector(write_projector(read_projector(bin_path), tmp_path / "p.safetensors"))
    assert all(torch.equal(src[k], back[k]) for k in src)


def test_collator_text_only_batch_runs_tower(parts):
    from transformers import LlavaForConditionalGeneration

    from llava_train.data import LlavaCollator

    ds = _dataset(parts, "vicuna_v1", parts["world"] / "llava/stage2.json")
    text_only = [ds[i] for i, s in enumerate(ds.samples) if s["image"] is None][:2]
    model = LlavaForConditionalGeneration.from_pretrained(parts["llava"]["vicuna_v1"])
    collator = LlavaCollator(ds.tokenizer.pad_token_id, ds.image_token_id, 16, (3, 32, 32))
    batch = collator(text_only)
    assert batch["pixel_values"].shape == (1, 3, 32, 32)
    plain = LlavaCollator(ds.tokenizer.pad_token_id, ds.image_token_id, 16, None)(text_only)
    with torch.no_grad():
        a, b = model(**batch).loss, model(**plain).loss
    assert torch.allclose(a, b, atol=1e-5)  # the dummy image changes nothing


def test_modality_length_sampler_groups():
    from llava_train.sampler import modality_length_grouped_indices

    lengths = [10 + i for i in range(16)] + [-(5 + i) for i in range(8)]
    order = modality_length_grouped_indices(lengths, 4, 2, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(24))
    for k in range(0, 24, 4):
        batch = order[k:k + 4]
        assert len({lengths[i] > 0 for i in batch}) == 1  # one modality per batch


def test_every_llava_config_parses(tmp_path):
    from tests.llava_helpers import REPO

    from llava_train.train import parse_args

    for cfg in sorted((REPO / "configs/llava").glob("*.yaml")):
        m, d, t = parse_args(["--config", str(cfg), "--output_dir", str(tmp_path), "--deepspeed", "", "--use_cpu", "true"])
        assert m.stage in ("stage1", "stage2", "stage2_lora") and d.template in ("plain", "vicuna_v1"), cfg
