"""Schema, consistency, held-out disjointness and determinism of the `tiny` synthetic world.

    HF_HUB_OFFLINE=1 .venv/bin/pytest -q tests/test_world_outputs.py
"""
from __future__ import annotations

import glob
import hashlib
import json
from collections import Counter
from pathlib import Path

import webdataset as wds

from clips_tower.world import generate_world
from clips_tower.world.scene import COLORS, SHAPES
from tests.world_helpers import pixel_hash, read_jsonl

OBJECT_KEYS = {"shape", "color", "size", "row", "col", "position"}
EVAL_FILES = ("pope", "gqa", "mme", "caption", "textvqa", "chartqa")


def test_manifest_lists_every_file_with_its_sha256(tiny_world: Path):
    manifest = json.loads((tiny_world / "MANIFEST.json").read_text())
    assert manifest["preset"] == "tiny" and manifest["seed"] == 0 and manifest["image_size"] == 32
    assert manifest["generator_version"]
    on_disk = sorted(p.relative_to(tiny_world).as_posix() for p in tiny_world.rglob("*") if p.is_file())
    assert sorted(manifest["files"]) == [f for f in on_disk if f != "MANIFEST.json"]
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((tiny_world / rel).read_bytes()).hexdigest() == digest, rel
    assert not list(tiny_world.parent.glob(".*tmp-*")), "staging directory left behind"


def test_pretrain_shards_read_back_with_webdataset(tiny_world: Path):
    urls = sorted(glob.glob(str(tiny_world / "pretrain" / "shard-*.tar")))
    assert len(urls) >= 2
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    manifest = json.loads((tiny_world / "MANIFEST.json").read_text())
    assert len(samples) == manifest["counts"]["pretrain"] >= 64
    assert len({s["__key__"] for s in samples}) == len(samples)
    web_words, syn_words = [], []
    for s in samples:
        assert s["png"].size == (32, 32) and s["png"].mode == "RGB"
        meta = s["json"]
        assert set(meta) == {"web_caption", "synthetic_caption", "objects"}
        assert s["txt"] == meta["web_caption"]
        assert 1 <= len(meta["objects"]) <= 6
        cells = [(o["row"], o["col"]) for o in meta["objects"]]
        assert len(set(cells)) == len(cells)
        for o in meta["objects"]:
            assert set(o) == OBJECT_KEYS and o["shape"] in SHAPES and o["color"] in COLORS
            # the synthetic caption is accurate: it names every object with its size
            assert f"{o['size']} {o['color']} {o['shape']}" in meta["synthetic_caption"]
        n_words = len(meta["synthetic_caption"].split())
        assert 40 <= n_words <= 100, meta["synthetic_caption"]
        web_words.append(len(meta["web_caption"].split()))
        syn_words.append(n_words)
    assert max(web_words) <= 10 and sum(web_words) * 5 < sum(syn_words)
    # web captions are noisy: some are uninformative (mention no shape at all)
    assert any(not any(shape in s["txt"].lower() for shape in SHAPES) for s in samples)


def _check_conversations(record: dict, images: Path) -> None:
    convs = record["conversations"]
    assert len(convs) >= 2 and len(convs) % 2 == 0
    assert [t["from"] for t in convs] == ["human", "gpt"] * (len(convs) // 2)
    assert all(isinstance(t["value"], str) and t["value"].strip() for t in convs)
    n_image = sum(t["value"].count("<image>") for t in convs)
    if "image" in record:
        assert (images / record["image"]).is_file(), record["image"]
        assert convs[0]["value"].count("<image>") == 1 and n_image == 1
        assert convs[0]["value"].startswith("<image>\n")
    else:
        assert n_image == 0


def test_llava_stage_json(tiny_world: Path):
    images = tiny_world / "llava" / "images"
    stage1 = json.loads((tiny_world / "llava" / "stage1.json").read_text())
    stage2 = json.loads((tiny_world / "llava" / "stage2.json").read_text())
    assert len(stage1) >= 16 and len(stage2) >= 32
    for record in stage1:
        _check_conversations(record, images)
        assert len(record["conversations"]) == 2 and "image" in record
    for record in stage2:
        _check_conversations(record, images)
    assert len({r["id"] for r in stage1 + stage2}) == len(stage1) + len(stage2)
    kinds = Counter(r["id"].split("-")[1] for r in stage2)
    assert set(kinds) == {"existence", "short_qa", "caption", "detail", "yes_no", "chat", "text", "chart",
                          "text_only"}
    for r in stage2:  # LLaVA-1.5's one-sentence caption instruction (its TextCaps prompt), one accurate sentence
        if r["id"].split("-")[1] == "caption":
            (q, a) = (t["value"] for t in r["conversations"])
            assert q == "<image>\nProvide a one-sentence caption for the provided image."
            assert a.endswith(" background.") and a.count(".") == 1
    assert any(len(r["conversations"]) > 2 for r in stage2)  # multi-turn
    assert sum("image" not in r for r in stage2) == kinds["text_only"] > 0
    used = {r["image"] for r in stage1 + stage2 if "image" in r}
    assert used == {p.name for p in images.iterdir()}


def test_eval_schemas(tiny_world: Path):
    ev = tiny_world / "eval"
    keys = {"pope": {"question_id", "image", "question", "answer", "category", "object"},
            "gqa": {"question_id", "image", "question", "answer"},
            "mme": {"question_id", "image", "question", "answer", "category"},
            "caption": {"question_id", "image", "references"},
            "textvqa": {"question_id", "image", "question", "answers"},
            "chartqa": {"question_id", "image", "question", "answer"}}
    records = {task: read_jsonl(ev / f"{task}.jsonl") for task in EVAL_FILES}
    for task, rows in records.items():
        assert 8 <= len(rows) <= 32, task
        assert len({r["question_id"] for r in rows}) == len(rows), task
        for r in rows:
            assert set(r) == keys[task], (task, r)
            assert r["image"].startswith("images/") and (ev / r["image"]).is_file()
    pope = records["pope"]
    assert Counter(r["answer"] for r in pope) == {"yes": len(pope) // 2, "no": len(pope) // 2}
    assert {r["category"] for r in pope} == {"random", "popular", "adversarial"}
    assert all(r["question"] == f"Is there a {r['object']} in the image?" for r in pope)
    by_image = {}
    for r in records["mme"]:
        by_image.setdefault(r["image"], []).append(r)
    for pair in by_image.values():
        assert sorted(r["answer"] for r in pair) == ["No", "Yes"] and len({r["category"] for r in pair}) == 1
        assert all(r["question"].endswith("Please answer yes or no.") for r in pair)
    assert all(len(r["references"]) >= 3 for r in records["caption"])
    assert all(r["answers"] and all(a for a in r["answers"]) for r in records["textvqa"])
    assert all(r["answer"].strip() for task in ("gqa", "chartqa") for r in records[task])


def test_retrieval_karpathy_json(tiny_world: Path):
    data = json.loads((tiny_world / "eval" / "retrieval" / "dataset.json").read_text())
    assert data["dataset"] == "synthworld" and len(data["images"]) >= 8
    sentids = []
    for img in data["images"]:
        assert img["split"] == "test"
        assert (tiny_world / "eval" / img["filepath"] / img["filename"]).is_file()
        assert img["sentids"] == [s["sentid"] for s in img["sentences"]] and len(img["sentences"]) >= 3
        for s in img["sentences"]:
            assert s["imgid"] == img["imgid"] and s["tokens"] and s["raw"]
        sentids += img["sentids"]
    assert len(set(sentids)) == len(sentids)


def test_retrieval_queries_are_coco_like_never_the_training_caption_style(tiny_world: Path):
    data = json.loads((tiny_world / "eval" / "retrieval" / "dataset.json").read_text())
    for img in data["images"]:
        assert len(img["sentences"]) == 5  # COCO's five references per image
        for s in img["sentences"]:
            raw = s["raw"]
            # one short sentence; the synthetic style is 40-100 words over several sentences
            assert raw.count(". ") == 0 and raw.endswith(".") and len(raw.split()) <= 45, raw
            assert "In total there" not in raw and "background has" not in raw, raw


def test_eval_images_are_held_out_by_content_hash(tiny_world: Path):
    train = {pixel_hash(p) for p in (tiny_world / "llava" / "images").glob("*.png")}
    urls = sorted(glob.glob(str(tiny_world / "pretrain" / "shard-*.tar")))
    train |= {pixel_hash(s["png"]) for s in wds.WebDataset(urls, shardshuffle=False)}
    held_out = [pixel_hash(p) for p in (tiny_world / "eval" / "images").glob("*.png")]
    assert len(train) > 100 and len(held_out) > 40
    assert not train & set(held_out)
    assert len(set(held_out)) == len(held_out)


def test_existence_conversations_ask_pope_questions_answered_from_the_scene(tiny_world: Path):
    from clips_tower.world.generate import _draw
    from clips_tower.world.presets import get_preset

    scenes = _draw(get_preset("tiny"), 0).llava["scene"]  # the scenes behind llava/images/scene_*.png
    stage2 = json.loads((tiny_world / "llava" / "stage2.json").read_text())
    records = [r for r in stage2 if r["id"].split("-")[1] == "existence"]
    assert len(records) >= len(stage2) // 3  # most of the mix (STAGE2_MIX)
    answers, adversarial, colour_mates = Counter(), 0, 0
    for r in records:
        scene = scenes[int(r["image"][len("scene_"):-len(".png")])]
        qs = [t["value"].removeprefix("<image>\n") for t in r["conversations"][0::2]]
        assert len(qs) == len(set(qs)) and 2 <= len(qs) <= 8  # distinct questions, up to 8 per image
        said = [t["value"] for t in r["conversations"][1::2]]
        assert said.count("Yes") == said.count("No") == min(4, len(scene.names))  # POPE's balance
        for q, a in zip(qs, (t["value"] for t in r["conversations"][1::2])):
            head, tail = "Is there a ", " in the image?\nAnswer the question using a single word or phrase."
            assert q.startswith(head) and q.endswith(tail), q
            name = q[len(head):-len(tail)]
            assert a == ("Yes" if name in scene.names else "No"), (q, a, scene.names)
            answers[a] += 1
            adversarial += a == "No" and name.split(" ", 1)[1] in {o.shape for o in scene.objects}
            colour_mates += a == "No" and name.split(" ", 1)[0] in {o.color for o in scene.objects}
    # hard negatives are common: a present shape in another colour (POPE's adversarial kind), or a present
    # colour on another shape (test_world_priors checks that the names themselves carry no answer)
    assert answers["Yes"] == answers["No"] and adversarial > answers["No"] / 3 and colour_mates > answers["No"] / 3


def test_the_existence_subset_is_stage2s_existence_records_unchanged(tiny_world: Path):
    # the data of the demo's existence-first phase of stage 2: the same records, in order, and no others
    stage2 = json.loads((tiny_world / "llava" / "stage2.json").read_text())
    subset = json.loads((tiny_world / "llava" / "stage2_existence.json").read_text())
    assert subset == [r for r in stage2 if r["id"].split("-")[1] == "existence"] and 0 < len(subset) < len(stage2)
    assert json.loads((tiny_world / "MANIFEST.json").read_text())["counts"]["stage2_existence"] == len(subset)


def test_yes_no_answers_have_one_form(tiny_world: Path):
    stage2 = json.loads((tiny_world / "llava" / "stage2.json").read_text())
    answers = Counter(t["value"] for r in stage2 for t in r["conversations"][1::2])
    assert answers["Yes"] > 0 and answers["No"] > 0
    assert not {a for a in answers if a.lower().strip(".") in ("yes", "no")} - {"Yes", "No"}


def test_lookup_lines_list_a_scene_and_answer_from_that_list(tiny_world: Path):
    lines = (tiny_world / "lookup.txt").read_text(encoding="utf-8").splitlines()
    manifest = json.loads((tiny_world / "MANIFEST.json").read_text())
    assert len(lines) == 4 * manifest["counts"]["pretrain"] == manifest["counts"]["lookup_lines"]
    answers, listings = Counter(), set()
    for line in lines:
        listing, rest = line.removeprefix("The shapes are ").split(". ", 1)
        listings.add(listing)
        names = set(listing.split(", "))
        assert all(n.split(" ")[0] in COLORS and n.split(" ")[1] in SHAPES for n in names)
        questions = rest.split(" in the image? ")
        assert len(questions) == 5  # 4 questions
        for q, a in zip(questions, questions[1:]):
            name = q.rsplit("Is there a ", 1)[1]
            answer = a.split(".", 1)[0]
            assert answer == ("Yes" if name in names else "No"), line
            answers[answer] += 1
    assert 0.4 < answers["Yes"] / sum(answers.values()) < 0.6
    assert len(listings) > 0.8 * len(lines)  # each line its own freshly drawn scene


def test_corpus_is_the_training_language(tiny_world: Path):
    lines = (tiny_world / "corpus.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) > 200 and all(line.strip() for line in lines)
    assert not any("<image>" in line for line in lines)
    stage2 = json.loads((tiny_world / "llava" / "stage2.json").read_text())
    answer = stage2[0]["conversations"][1]["value"]
    assert answer in lines


def test_same_seed_same_bytes_other_seed_other_world(tiny_world: Path, tmp_path: Path):
    first = json.loads((tiny_world / "MANIFEST.json").read_text())
    again = generate_world(tmp_path / "again", preset="tiny", seed=0)
    assert again["files"] == first["files"]
    assert (tmp_path / "again" / "MANIFEST.json").read_bytes() == (tiny_world / "MANIFEST.json").read_bytes()
    other = generate_world(tmp_path / "other", preset="tiny", seed=1)
    assert other["files"]["llava/stage2.json"] != first["files"]["llava/stage2.json"]


def test_output_does_not_depend_on_worker_count(tmp_path: Path):
    one = generate_world(tmp_path / "one", preset="tiny", seed=3, workers=1, pretrain=40, shard_size=16)
    two = generate_world(tmp_path / "two", preset="tiny", seed=3, workers=2, pretrain=40, shard_size=16)
    assert one["files"] == two["files"] and one["counts"]["pretrain_shards"] == 3
