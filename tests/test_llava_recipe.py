"""LLaVA-1.5 exactness: prompts, data semantics, `pad` preprocessing and `llava check-data`.

    pytest -q tests/test_llava_recipe.py

Expected strings are written from the facts of haotian-liu/LLaVA `llava/conversation.py` and
`llava/train/train.py` (conv_vicuna_v1: separator style TWO, sep " ", sep2 "</s>"), not from our output.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.llava_helpers import REPO, make_lm, make_tower, offline_env, write_json

SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
          "helpful, detailed, and polite answers to the user's questions.")


@pytest.fixture(scope="module")
def parts(tiny_world, tmp_path_factory):
    from llava_train.model import assemble_llava

    tmp = tmp_path_factory.mktemp("llava_recipe")
    tower, lm = make_tower(tmp / "tower"), make_lm(tiny_world, tmp / "lm")
    return {"tmp": tmp, "tower": tower, "lm": lm, "world": tiny_world,
            "vicuna": assemble_llava(tower, lm, tmp / "llava-vicuna", template="vicuna_v1"),
            "plain": assemble_llava(tower, lm, tmp / "llava-plain", template="plain")}


def _tok(parts):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(parts["vicuna"])
    assert tok.eos_token == "</s>"  # sep2 of conv_vicuna_v1 is the LM's eos "</s>"
    return tok


def _render(name, conversations, tok, image=True):
    from llava_train.samples import check_record
    from llava_train.templates import get_template

    rec = {"id": 0, "conversations": conversations, **({"image": "a.png"} if image else {})}
    text, spans = get_template(name).render(check_record(rec), tok)
    return text, [text[a:b] for a, b in spans]


def test_vicuna_v1_training_text_is_llava15(parts):
    tok = _tok(parts)
    convs = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A red circle."},
             {"from": "human", "value": "Where?"}, {"from": "gpt", "value": "Top left."}]
    text, learned = _render("vicuna_v1", convs, tok)
    assert text == (SYSTEM + " " + "USER: " + "<image>\nWhat is it?" + " " + "ASSISTANT: " + "A red circle." + "</s>"
                    + "USER: " + "Where?" + " " + "ASSISTANT: " + "Top left." + "</s>")
    assert learned == [" A red circle.</s>", " Top left.</s>"]  # all after the generation prompt "ASSISTANT:"
    one, learned = _render("vicuna_v1", convs[:2], tok)
    assert one == SYSTEM + " USER: <image>\nWhat is it? ASSISTANT: A red circle.</s>" and learned == [" A red circle.</s>"]


def test_llava_v1_is_the_curious_human_text(parts):
    text, _ = _render("llava_v1", [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}], _tok(parts),
                      image=False)
    assert text == ("A chat between a curious human and an artificial intelligence assistant. The assistant gives "
                    "helpful, detailed, and polite answers to the human's questions. USER: Hi ASSISTANT: Hello</s>")


def test_plain_is_image_caption_newline(parts):
    text, learned = _render("plain", [{"from": "human", "value": "Describe.\n<image>"},
                                      {"from": "gpt", "value": "A red circle."}], _tok(parts))
    assert text == "<image>" + "A red circle." + "\n" and learned == ["A red circle.\n"]


def test_generation_prompt_through_stock_processor(parts):
    # The saved chat template, rendered by stock transformers (LLaVA-1.5 eval: --conv-mode vicuna_v1).
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(parts["vicuna"])
    one = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
    assert processor.apply_chat_template(one, add_generation_prompt=True) == (
        SYSTEM + " " + "USER: " + "<image>\n" + "What is it?" + " " + "ASSISTANT:")
    several = one + [{"role": "assistant", "content": [{"type": "text", "text": "A red circle."}]},
                     {"role": "user", "content": [{"type": "text", "text": "Where?"}]}]
    assert processor.apply_chat_template(several, add_generation_prompt=True) == (
        SYSTEM + " USER: <image>\nWhat is it? ASSISTANT: A red circle.</s>USER: Where? ASSISTANT:")
    # the training text of the same conversation continues the generation prompt with " A</s>"
    text, _ = _render("vicuna_v1", [{"from": "human", "value": "What is it?\n<image>"},
                                    {"from": "gpt", "value": "A red circle."}], processor.tokenizer)
    prompt = processor.apply_chat_template(one, add_generation_prompt=True)
    assert text == prompt + " A red circle.</s>"
    plain = AutoProcessor.from_pretrained(parts["plain"])
    assert plain.apply_chat_template([{"role": "user", "content": [{"type": "image"}]}],
                                     add_generation_prompt=True) == "<image>"


def test_labels_are_the_assistant_tokens(parts):
    from llava_train.samples import IGNORE_INDEX, SampleBuilder

    tok = _tok(parts)
    builder = SampleBuilder(tok, "vicuna_v1", num_image_tokens=16, model_max_length=512)
    s = builder.build({"id": "x", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A red circle."},
        {"from": "human", "value": "Where?"}, {"from": "gpt", "value": "Top left."}]})
    learned = [t for t, lab in zip(s["input_ids"], s["labels"]) if lab != IGNORE_INDEX]
    assert tok.decode(learned).replace(" ", "") == "Aredcircle.</s>Topleft.</s>"  # nothing of USER/ASSISTANT
    assert learned.count(tok.eos_token_id) == 2 and s["input_ids"].count(builder.image_token_id) == 16


def test_labels_are_what_generation_must_produce(parts):
    # The learned tokens are exactly the tokens a model must generate after the stock processor's
    # generation prompt, including a bare space token: this byte-level BPE splits " Xylo" into "Ġ" + ...
    # (Llama's sentencepiece gives one "▁Yes"). Learning only the answer's own characters left that
    # "Ġ" unlearned, and the model could never start such an answer ("Yes"/"No" in the demo world).
    from transformers import AutoProcessor

    from llava_train.samples import IGNORE_INDEX, SampleBuilder

    processor = AutoProcessor.from_pretrained(parts["vicuna"])
    tok = processor.tokenizer
    assert tok.convert_ids_to_tokens(tok(" Xylo", add_special_tokens=False).input_ids)[0] == "Ġ"
    builder = SampleBuilder(tok, "vicuna_v1", num_image_tokens=1, model_max_length=512)
    s = builder.build({"id": "x", "image": "a.png", "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "Xylo"}]})
    learned = [t for t, lab in zip(s["input_ids"], s["labels"]) if lab != IGNORE_INDEX]
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}],
        add_generation_prompt=True)
    before, full = (tok(t, add_special_tokens=False).input_ids for t in (prompt, prompt + " Xylo</s>"))
    assert full[: len(before)] == before and learned == full[len(before):]


def test_llava15_data_semantics(parts):
    from llava_train.samples import BadSample, check_record

    a = {"from": "gpt", "value": "Ok."}
    # leading gpt turn dropped, sample kept; <image> moved to the front with "\n"; int or str ids; unknown keys
    turns = check_record({"id": 7, "model": "x", "image": "a.jpg", "conversations": [
        {"from": "gpt", "value": "Hello!"}, {"from": "human", "value": "Look: <image> what?"}, a]})
    assert turns == [("user", "<image>\nLook:  what?"), ("assistant", "Ok.")]
    assert check_record({"id": "s1", "conversations": [{"from": "human", "value": "Hi"}, a]}) == [
        ("user", "Hi"), ("assistant", "Ok.")]  # text-only kept
    multi = check_record({"id": 1, "image": "b.jpg", "conversations": [
        {"from": "human", "value": "Q1\n<image>"}, a, {"from": "human", "value": "Q2"}, a]})
    assert multi[0] == ("user", "<image>\nQ1") and len(multi) == 4
    bad = {
        "bad_value": {"conversations": [{"from": "human", "value": 3}, a]},
        "bad_roles": {"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}, a]},
        "image_token_without_image": {"conversations": [{"from": "human", "value": "<image>\nQ"}, a]},
        "image_without_token": {"image": "a.jpg", "conversations": [{"from": "human", "value": "Q"}, a]},
        "bad_record": "just a string",
        "bad_image_field": {"image": None, "conversations": [{"from": "human", "value": "<image>\nQ"}, a]},
    }
    for reason, rec in bad.items():
        with pytest.raises(BadSample) as e:
            check_record(rec)
        assert e.value.reason == reason, (reason, rec)


def test_gif_under_jpg_name_decodes_like_llava15(tmp_path):
    # OCR-VQA ships GIFs saved as .jpg; LLaVA-1.5 does Image.open(path).convert("RGB") (PIL sniffs the content).
    from llava_train.data import load_image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).convert("P").save(tmp_path / "a.jpg", "GIF")
    assert Image.open(tmp_path / "a.jpg").format == "GIF"
    ours = np.asarray(load_image(tmp_path / "a.jpg"))
    assert np.array_equal(ours, np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB")))


def _expand2square(img: Image.Image, background) -> Image.Image:
    # LLaVA-1.5's expand2square, from its description: a square of the longer side filled with the
    # background colour, the image pasted centred along the shorter side (offset (long - short) // 2).
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    out = Image.new(img.mode, (side, side), background)
    out.paste(img, (0, (w - h) // 2) if w > h else ((h - w) // 2, 0))
    return out


@pytest.mark.parametrize("preprocess", [
    {"size": 32, "resize_mode": "squash", "interpolation": "bilinear",
     "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},   # CLIPS
    {"size": 32, "resize_mode": "shortest", "interpolation": "bicubic",
     "mean": (0.48145466, 0.4578275, 0.40821073), "std": (0.26862954, 0.26130258, 0.27577711)},  # OpenAI CLIP
])
def test_pad_equals_expand2square_then_tower_preprocessing(preprocess, tmp_path):
    from transformers import AutoProcessor, LlavaProcessor

    from clips_tower.adapter.processors import processor_from_preprocess
    from llava_train.model import with_aspect_ratio

    tower = processor_from_preprocess(preprocess)
    padded = with_aspect_ratio(processor_from_preprocess(preprocess), "pad")
    background = tuple(int(x * 255) for x in preprocess["mean"])
    rng = np.random.default_rng(1)
    for w, h in ((50, 20), (17, 61), (33, 33)):
        img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        ref = tower(_expand2square(img, background), return_tensors="pt").pixel_values
        got = padded(img, return_tensors="pt").pixel_values
        assert got.shape == ref.shape and (got - ref).abs().max().item() == 0.0, (w, h)
    # native stays the tower's own preprocessing; pad differs from it on non-square images
    img = Image.fromarray(rng.integers(0, 255, (20, 50, 3), dtype=np.uint8))
    assert with_aspect_ratio(tower, "native") is tower
    assert not np.allclose(tower(img, return_tensors="np").pixel_values, padded(img, return_tensors="np").pixel_values)
    # saved with a Llava processor, it reloads in stock AutoProcessor as LlavaImageProcessor(do_pad=True)
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0, "<image>": 1}, "<unk>")),
                                  unk_token="<unk>", extra_special_tokens={"image_token": "<image>"})
    LlavaProcessor(image_processor=padded, tokenizer=tok, patch_size=8, num_additional_image_tokens=1,
                   vision_feature_select_strategy="default").save_pretrained(tmp_path / "p")
    cfg = json.loads((tmp_path / "p/processor_config.json").read_text())["image_processor"]
    assert cfg["image_processor_type"] == "LlavaImageProcessor" and cfg["do_pad"] is True
    stock = AutoProcessor.from_pretrained(tmp_path / "p").image_processor
    assert type(stock).__name__ == "LlavaImageProcessor" and stock.do_pad
    ref = tower(_expand2square(img, background), return_tensors="pt").pixel_values
    assert (stock(img, return_tensors="pt").pixel_values - ref).abs().max().item() < 0.02  # torchvision backend


QUIRKS = [
    ("leading-gpt", {"image": "IMG", "conversations": [{"from": "gpt", "value": "Hi, ask me."},
                                                       {"from": "human", "value": "<image>\nWhat is it?"},
                                                       {"from": "gpt", "value": "A shape."}]}, None),
    (17, {"image": "IMG", "conversations": [{"from": "human", "value": "What is it?\n<image>"},
                                            {"from": "gpt", "value": "A shape."}], "model": "gpt-4"}, None),
    ("text-only", {"conversations": [{"from": "human", "value": "Say hi."}, {"from": "gpt", "value": "Hi."}]}, None),
    ("gif-as-jpg", {"image": "ocr.jpg", "conversations": [{"from": "human", "value": "<image>\nRead it."},
                                                          {"from": "gpt", "value": "Text."}]}, None),
    ("value-not-str", {"conversations": [{"from": "human", "value": ["x"]}, {"from": "gpt", "value": "y"}]},
     "bad_value"),
    ("roles", {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"},
                                 {"from": "gpt", "value": "c"}]}, "bad_roles"),
    ("token-no-image", {"conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]},
     "image_token_without_image"),
    ("image-no-token", {"image": "IMG", "conversations": [{"from": "human", "value": "Q"},
                                                          {"from": "gpt", "value": "A"}]}, "image_without_token"),
    ("missing-file", {"image": "nope/none.jpg", "conversations": [{"from": "human", "value": "<image>\nQ"},
                                                                  {"from": "gpt", "value": "A"}]}, "missing_image"),
    ("corrupt-file", {"image": "broken.jpg", "conversations": [{"from": "human", "value": "<image>\nQ"},
                                                               {"from": "gpt", "value": "A"}]}, "corrupt_image"),
    ("string-record", "not a record", "bad_record"),
]


def _quirk_data(parts, tmp_path):
    images = tmp_path / "images"
    good = json.loads((parts["world"] / "llava/stage2.json").read_text())
    img = next(r["image"] for r in good if "image" in r)
    (images / Path(img).parent).mkdir(parents=True, exist_ok=True)
    shutil.copy(parts["world"] / "llava/images" / img, images / img)
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).convert("P").save(images / "ocr.jpg", "GIF")
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    records = []
    for sid, rec, _ in QUIRKS:
        if isinstance(rec, dict):
            rec = {"id": sid, **{k: (img if v == "IMG" else v) for k, v in rec.items()}}
        records.append(rec)
    return write_json(tmp_path / "quirks.json", records), images


def _check_data_args(parts, data, images, out):
    return ["--config", str(REPO / "configs/llava/stage2_tiny.yaml"), "--model_name_or_path", str(parts["lm"]),
            "--vision_tower", str(parts["tower"]), "--data_path", str(data), "--image_folder", str(images),
            "--output_dir", str(out)]


def test_check_data_keeps_what_llava15_keeps(parts, tmp_path, capsys):
    from llava_train.check_data import main

    data, images = _quirk_data(parts, tmp_path)
    args = _check_data_args(parts, data, images, tmp_path / "run")
    report, clean = tmp_path / "report.json", tmp_path / "clean.json"
    assert main(args + ["--workers", "2", "--show", "2", "--report", str(report), "--write-clean", str(clean)]) == 0
    out = capsys.readouterr().out
    rep = json.loads(report.read_text())
    expected_bad = {}
    for _, _, reason in QUIRKS:
        if reason:
            expected_bad[reason] = expected_bad.get(reason, 0) + 1
    assert rep["records"] == len(QUIRKS) and rep["kept"] == 4 and rep["bad"] == expected_bad
    assert rep["first_ids"]["missing_image"] == ["missing-file"] and rep["first_ids"]["bad_record"] == [None]
    kept = json.loads(clean.read_text())
    assert [r["id"] for r in kept] == ["leading-gpt", 17, "text-only", "gif-as-jpg"]
    assert kept[1]["model"] == "gpt-4"  # the input, unchanged, without the bad records
    assert "⟦A shape.</s>⟧" in out.replace("⟦ ", "⟦") and "<image>x16" in out and "too_long" in out
    assert "Hi, ask me." not in out  # the leading gpt turn is dropped
    assert sum(r["count"] for r in rep["length_histogram"]) == 4
    # unreadable input: one line, exit 2
    for name, content in (("obj.json", b'{"id": 1}'), ("bad.json", b'[{"id": 1,'), ("latin.json", b'["\xe9"]'),
                          ("empty.json", b"[]")):
        (tmp_path / name).write_bytes(content)
        assert main(_check_data_args(parts, tmp_path / name, images, tmp_path / "run")) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and name in err and "Traceback" not in err, err
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(json.loads(clean.read_text())).encode())
    assert main(_check_data_args(parts, tmp_path / "bom.json", images, tmp_path / "run")) == 0  # a UTF-8 BOM is fine


def test_lazy_dataset_equals_full_pass(parts, tmp_path):
    """The training dataset's items are exactly check-data's samples, in the same order, with the same labels."""
    from transformers import AutoProcessor

    from llava_train.check_data import scan
    from llava_train.data import LlavaDataset
    from llava_train.model import image_seq_length
    from llava_train.samples import SampleBuilder

    data = parts["world"] / "llava/stage2.json"
    processor = AutoProcessor.from_pretrained(parts["vicuna"])
    ds = LlavaDataset(data, parts["world"] / "llava/images", processor, "vicuna_v1", 512, index_dir=tmp_path / "ix",
                      image_seq_length=image_seq_length(parts["vicuna"]))
    raw = json.loads(data.read_text())
    builder = SampleBuilder(processor.tokenizer, "vicuna_v1", 16, 512)
    full = [builder.build(r) for r in raw]  # the eager pass over the whole JSON
    assert len(ds) == len(full) and all(reason is None for reason, _ in scan(ds, 1, progress=False).values())
    for i, ref in enumerate(full):
        item = ds[i]
        assert item["input_ids"].tolist() == ref["input_ids"] and item["labels"].tolist() == ref["labels"]
        assert ("pixel_values" in item) == (ref["image"] is not None) and item["bad_samples"] == []
    words = [sum(len(t["value"].split()) for t in r["conversations"]) for r in raw]
    assert ds.modality_lengths == [n + 16 if "image" in r else -n for n, r in zip(words, raw)]


STOCK_PROMPT = """
import sys
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration
path, system = sys.argv[1], sys.argv[2]
processor = AutoProcessor.from_pretrained(path)
one = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is it?"}]}]
assert processor.apply_chat_template(one, add_generation_prompt=True) == system + " USER: <image>\\nWhat is it? ASSISTANT:"
two = one + [{"role": "assistant", "content": "A circle."}, {"role": "user", "content": "Where?"}]
assert processor.apply_chat_template(two, add_generation_prompt=True) == (
    system + " USER: <image>\\nWhat is it? ASSISTANT: A circle.</s>USER: Where? ASSISTANT:")
ip = processor.image_processor
assert type(ip).__name__ == "LlavaImageProcessor" and ip.do_pad, ip
model = LlavaForConditionalGeneration.from_pretrained(path)
inputs = processor(images=Image.new("RGB", (50, 20), "red"), text=processor.apply_chat_template(one, add_generation_prompt=True),
                   return_tensors="pt")
assert model.generate(**inputs, max_new_tokens=2, do_sample=False).shape[1] == inputs["input_ids"].shape[1] + 2
print("stock-ok", [m for m in sys.modules if m.split(".")[0] in ("llava_train", "clips_tower", "clips_llava_eval")])
"""


@pytest.mark.slow
def test_finetune_script_model_renders_v1_prompt_and_pads_in_stock_transformers(parts, tmp_path):
    out = tmp_path / "stage2"
    w = parts["world"] / "llava"
    cmd = ["bash", str(REPO / "scripts/finetune.sh"), "--config", "configs/llava/stage2_tiny.yaml",
           "--model_name_or_path", str(parts["lm"]), "--vision_tower", str(parts["tower"]),
           "--data_path", str(w / "stage2.json"), "--image_folder", str(w / "images"), "--output_dir", str(out),
           "--max_steps", "1", "--image_aspect_ratio", "pad"]
    r = subprocess.run(cmd, cwd=REPO, env=offline_env(LAUNCHER="torchrun", NPROC="1", PY=sys.executable),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert json.loads((out / "run_report.json").read_text())["image_aspect_ratio"] == "pad"
    r = subprocess.run([sys.executable, "-c", STOCK_PROMPT, str(out), SYSTEM], cwd=tmp_path,
                       env=offline_env(PYTHONPATH=""), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stock-ok []" in r.stdout
