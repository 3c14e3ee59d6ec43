"""llava_train parts without training: LM init, assembly, templates/labels, bad samples, projector IO.

    pytest -q tests/test_llava_data.py
"""
from __future__ import annotations

import itertools
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
    from llava_train.model import image_seq_length

    processor = AutoProcessor.from_pretrained(parts["llava"][template])
    return LlavaDataset(data, parts["world"] / "llava/images", processor, template, kw.pop("max_len", 512),
                        index_dir=parts["tmp"] / "index", image_seq_length=image_seq_length(parts["llava"][template]),
                        **kw)


def test_lm_pretrain_learns(parts, tmp_path):
    from llava_train.lm import pretrain_lm

    r = pretrain_lm(parts["lm"], parts["world"], tmp_path / "lm", steps=12, batch_size=8, block_size=64, lr=5e-3)
    assert r["last_loss"] < r["first_loss"] - 0.5


def test_lm_pretrain_reads_several_files_in_order(parts, tmp_path):
    from transformers import AutoTokenizer

    from llava_train.lm.build import _blocks

    tok = AutoTokenizer.from_pretrained(parts["lm"])
    a, b, both = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "both.txt"
    a.write_text("The shapes are red star. Is there a red star in the image? Yes.\n" * 5, encoding="utf-8")
    b.write_text("A small blue circle on a gray background.\n" * 7, encoding="utf-8")
    both.write_text(a.read_text() + b.read_text(), encoding="utf-8")
    two, one = _blocks([a, b], tok, 64), _blocks(both, tok, 64)
    assert all(torch.equal(two[k], one[k]) for k in one)
    assert not torch.equal(_blocks([b, a], tok, 64)["input_ids"], one["input_ids"])  # the order is kept
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        _blocks([a, tmp_path / "missing.txt"], tok, 64)


def test_lm_pretrain_blocks_hold_whole_sentences_that_attend_only_to_themselves(parts, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llava_train.lm.build import _blocks

    tok = AutoTokenizer.from_pretrained(parts["lm"])
    lines = ["A small red circle on a gray background. Is there a red circle in the image? Yes.",
             "Is there a blue star in the image? No.", "untitled 2", "x " * 40]  # the last is 41+ tokens
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    b = _blocks(corpus, tok, 32)
    ids, pos, lab = b["input_ids"], b["position_ids"], b["labels"]
    sentences = [[tok.bos_token_id, *tok(x.strip(), add_special_tokens=False).input_ids, tok.eos_token_id] for x in lines]
    segments = []  # each row cut where its positions restart at 0
    for row, p in zip(ids.tolist(), pos.tolist()):
        starts = [t for t in range(len(p)) if p[t] == 0] + [len(p)]
        segments += [row[a:b] for a, b in itertools.pairwise(starts)]
    for sentence in sentences[:3]:  # short sentences are never split, each is one segment of its own
        assert sentence in segments
    long = sentences[3]
    pieces = sentences[:3] + [long[i:i + 32] for i in range(0, len(long), 32)]  # a long one: block-sized pieces
    assert len(long) > 32 and all(piece in segments for piece in pieces)
    assert (lab[pos == 0] == -100).all()  # a segment's first token is never a target
    assert ((lab == -100) | (lab == ids)).all() and int((lab != -100).sum()) == sum(len(x) - 1 for x in pieces)
    # packed logits equal each sentence's own: the position_ids make the causal mask block-diagonal
    # (without a cache: with one, transformers does not look for packed rows; Trainer trains without)
    model = AutoModelForCausalLM.from_pretrained(parts["lm"]).eval()
    row = next(r for r in range(len(ids)) if (pos[r] == 0).sum() >= 3)
    starts = (pos[row] == 0).nonzero().flatten().tolist()
    with torch.no_grad():
        packed = model(input_ids=ids[row:row + 1], position_ids=pos[row:row + 1], use_cache=False).logits[0]
        alone = model(input_ids=ids[row:row + 1, starts[1]:starts[2]]).logits[0]
    assert torch.allclose(packed[starts[1]:starts[2]], alone, atol=1e-4)


def test_lm_tokenizer_prepends_bos_as_llama_does(parts):
    """Llama's tokenizer (add_bos_token=True, no eos) starts every encoded text with <s>, so LLaVA-1.5's
    stage-1 input is "<s><image>caption\n". Without it the image tokens open the sequence."""
    from transformers import AutoProcessor

    from llava_train.data import IGNORE_INDEX

    tok = AutoProcessor.from_pretrained(parts["llava"]["plain"]).tokenizer
    ids = tok("A red star.").input_ids
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1 and tok.eos_token_id not in ids
    assert tok("A red star.", add_special_tokens=False).input_ids == ids[1:]
    s = _dataset(parts, "plain", parts["world"] / "llava/stage1.json").sample(0)
    assert s["input_ids"][0] == tok.bos_token_id and s["labels"][0] == IGNORE_INDEX
    assert s["input_ids"][1] == tok.convert_tokens_to_ids("<image>")


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
    for s in map(ds.sample, range(5)):
        learned = tok.decode([t for t, lab in zip(s["input_ids"], s["labels"]) if lab != IGNORE_INDEX])
        answers = [t["value"] for t in raw[s["id"]]["conversations"] if t["from"] == "gpt"]
        assert all(a in learned for a in answers)
        rest = learned
        for a in answers:
            rest = rest.replace(a, "", 1)
        assert not rest.replace("</s>", "").strip(), rest  # nothing else: the answers, `</s>` and separators
        questions = [t["value"].replace("<image>", "").strip() for t in raw[s["id"]]["conversations"] if t["from"] == "human"]
        assert not any(q and q in learned for q in questions)
        assert s["input_ids"].count(tok.convert_tokens_to_ids("<image>")) == (16 if s["image"] else 0)


def test_training_text_matches_processor_prompt(parts):
    # The template's rendered text starts with exactly what the saved processor's chat template produces.
    from transformers import AutoProcessor

    from llava_train.samples import check_record
    from llava_train.templates import get_template

    processor = AutoProcessor.from_pretrained(parts["llava"]["vicuna_v1"])
    convs = [{"from": "human", "value": "Q1?\n<image>"}, {"from": "gpt", "value": "A1."},
             {"from": "human", "value": "Q2?"}, {"from": "gpt", "value": "A2."}]
    rec = {"id": 1, "image": "x.png", "conversations": convs}
    text, _ = get_template("vicuna_v1").render(check_record(rec), processor.tokenizer)
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q1?"}]},
            {"role": "assistant", "content": "A1."}, {"role": "user", "content": "Q2?"}]
    prompt = processor.apply_chat_template(msgs, add_generation_prompt=True)
    assert text.startswith(prompt) and text[len(prompt):] == " A2." + processor.tokenizer.eos_token
    assert prompt.endswith("</s>USER: Q2? ASSISTANT:")


def test_bad_samples_replaced_at_load_time_and_counted(parts, tmp_path):
    from transformers import AutoProcessor

    from llava_train.data import LlavaDataset, batch_bad_samples
    from llava_train.model import image_seq_length
    from llava_train.skips import BadSampleTracker, TooManyBadSamples

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
            {"from": "human", "value": "<image>\nTalk."}, {"from": "gpt", "value": "word " * 1000}]},
    ]
    data = write_json(tmp_path / "data.json", good + bad)
    processor = AutoProcessor.from_pretrained(parts["llava"]["vicuna_v1"])
    n = image_seq_length(parts["llava"]["vicuna_v1"])
    ds = LlavaDataset(data, images, processor, "vicuna_v1", 512, max_bad_sample_fraction=0.5, index_dir=tmp_path / "ix",
                      image_seq_length=n)
    # structural problems are known at start-up (no tokenizer, no image decoding) ...
    assert ds.startup_skips.counts == {"image_token_count": 1} and len(ds) == len(good) + 3
    # ... the others when the sample is built: replaced by another sample, reported in the item
    items = [ds[i] for i in range(len(ds))]
    replaced = [x for it in items for x in it["bad_samples"]]
    # (a replacement can itself be bad: then it is reported and replaced too, so each appears at least once)
    assert set(replaced) == {("corrupt_image", "bad-corrupt"), ("missing_image", "bad-missing"),
                             ("too_long", "bad-overlong")}
    ids_used = {tuple(it["input_ids"].tolist()) for it in items}
    assert all(it["labels"].ne(-100).any() for it in items) and len(items) == len(ds)
    assert all("pixel_values" in it or it["input_ids"].ne(ds.image_token_id).all() for it in items)
    assert len(ids_used) <= len(good)  # every item is a good sample (the replacements repeat good ones)
    again = [ds[i] for i in range(len(ds))]  # the replacement is a function of the index: resume-exact
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(items, again))
    # the tracker sums the batch reports and stops above the fraction, after min_seen samples
    tracker = BadSampleTracker(max_fraction=0.5, min_seen=10)
    tracker.update(batch_bad_samples(items))
    from collections import Counter

    assert tracker.training.counts == Counter(reason for reason, _ in replaced)
    assert tracker.seen == len(items) + len(replaced) and tracker.training.ids["corrupt_image"] == ["bad-corrupt"]
    strict = BadSampleTracker(max_fraction=0.01, min_seen=10)
    with pytest.raises(TooManyBadSamples, match="corrupt_image=.*missing_image=.*too_long="):
        strict.update(batch_bad_samples(items))
    with pytest.raises(TooManyBadSamples, match="image_token_count"):  # start-up fraction
        LlavaDataset(data, images, processor, "vicuna_v1", 512, max_bad_sample_fraction=0.001, index_dir=tmp_path / "ix",
                     image_seq_length=n)


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
    text_only = [ds[i] for i in range(len(ds)) if ds.sample(i)["image"] is None][:2]
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
    """Every configs/llava/*.yaml parses, and each of its settings arrives on the parsed arguments with
    the YAML's value (a parser that dropped or mangled a key, or let a default win, fails here)."""
    import enum

    from tests.llava_helpers import REPO

    from llava_train.train import parse_args, read_yaml_config

    cli = {"output_dir": str(tmp_path), "deepspeed": "", "use_cpu": True}
    for cfg in sorted((REPO / "configs/llava").glob("*.yaml")):
        m, d, t = parse_args(["--config", str(cfg), "--output_dir", str(tmp_path), "--deepspeed", "", "--use_cpu", "true"])
        assert m.stage in ("stage1", "stage2", "stage2_lora") and d.template in ("plain", "vicuna_v1"), cfg
        yaml = read_yaml_config(cfg)
        assert yaml, cfg
        for key, want in {**yaml, **cli}.items():
            owners = [a for a in (m, d, t) if hasattr(a, key)]
            assert owners, f"{cfg.name}: {key} is on no argument dataclass"
            got = getattr(owners[0], key)
            got = got.value if isinstance(got, enum.Enum) else got
            if key == "report_to":  # TrainingArguments keeps a list of integrations; "none" is none
                assert got in ([] if want == "none" else [want], [want], want), (cfg.name, key, got)
            elif key == "deepspeed" and key in cli:
                assert not got, (cfg.name, got)  # the command line wins over the YAML
            else:
                assert got == want, (cfg.name, key, got, want)


@pytest.mark.parametrize("cached", [False, True], ids=["pixels", "feature-cache"])
def test_both_collators_give_a_text_only_batch_the_same_zero_image(cached):
    from llava_train.data import LlavaCollator
    from llava_train.packing import PackingCollator

    def item(n, **extra):
        return {"input_ids": torch.arange(1, n + 1), "labels": torch.arange(1, n + 1), **extra}

    args = (0, 99, 4, (3, 8, 8))  # pad id, <image> id, image tokens, image shape
    for collator in (LlavaCollator(*args, cached_features=cached), PackingCollator(*args, cached_features=cached)):
        out = collator([item(5), item(3)])
        assert int((out["input_ids"] == 99).sum()) == 4, type(collator).__name__
        if cached:
            assert out["image_rows"].tolist() == [0] and "pixel_values" not in out
        else:
            assert "image_rows" not in out and out["pixel_values"].shape == (1, 3, 8, 8)
            assert not out["pixel_values"].any()
        shown = collator([item(5, **({"image_row": 7} if cached else {"pixel_values": torch.ones(3, 8, 8)}))])
        assert int((shown["input_ids"] == 99).sum()) == 0  # a batch with an image gets no zero image
        assert (shown["image_rows"].tolist() == [7]) if cached else bool(shown["pixel_values"].all())
        assert "pixel_values" not in collator.__class__(*args[:3], None)([item(5)])  # no shape: no zero image
