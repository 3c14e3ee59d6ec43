"""CLIPS pretraining on img2dataset shards of Recap-DataComp-1B: configurable caption sources.

Writes tiny shards in img2dataset's webdataset layout (`KEY.jpg`, `KEY.txt` = --caption_col
org_caption, `KEY.json` with img2dataset's own fields plus the saved `re_caption` column) and checks
the loader, the skip counting, config validation, a short `clips train` run with the
recap-datacomp caption keys (tiny model widths) and that `configs/clips/recap-datacomp.yaml` names
the published ViT-L-14-CLIPS-224 shape (without building it).
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from clips_tower import train
from clips_tower.config import CaptionSource, load_run_config
from clips_tower.data import CaptionReader, ShardStream, check_caption_fields, list_shards
from clips_tower.export import image_transform, preprocess_cfg
from clips_tower.images import load_rgb
from clips_tower.model import load_arch
from clips_tower.tokenizer import build_tokenizer

RECAP = Path("configs/clips/recap-datacomp.yaml")
TINY_ARCH = Path("configs/clips/models/tiny.json").resolve()
STATUS_SKIP = "json status not 'success'"

# (key, colour, org_caption, re_caption or None = column absent, status); img2dataset keys are
# shard id (5 digits) + index in the shard (4 digits), shards are 00000.tar, 00001.tar, ...
SHARDS = {
    "00000": [
        ("000000000", (200, 30, 30), "red mug on sale", "A red ceramic mug on a table. It has a handle.", "success"),
        ("000000001", (30, 200, 30), "green chair", "A green wooden chair. The wall behind it is white.", "success"),
        ("000000002", (30, 30, 200), "blue car pic", None, "success"),  # re_caption missing
        ("000000003", (200, 200, 30), "yellow flowers", "Yellow tulips in a glass vase.", "success"),
        ("000000004", (90, 90, 90), "grey sky", "An overcast grey sky.", "failed_to_download"),
        ("000000005", (200, 30, 200), "purple shirt", "A purple cotton shirt on a hanger. It is folded.", "success"),
    ],
    "00001": [
        ("000010000", (30, 200, 200), "teal lake", "A teal lake under a clear sky.", "success"),
        ("000010001", (120, 60, 0), "", "A brown leather bag on a bench.", "success"),  # empty org_caption
        ("000010002", (250, 250, 250), "white cat", "A white cat asleep on a sofa. Its eyes are closed.", "success"),
        ("000010003", (0, 0, 0), "black phone", "null", "success"),  # re_caption null
        ("000010004", (255, 128, 0), "orange ball", "An orange ball on green grass.", "success"),
    ],
}
GOOD = {s: [r for r in rows if r[3] not in (None, "null") and r[2] and r[4] == "success"] for s, rows in SHARDS.items()}


def _jpeg(colour, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _img2dataset_json(key, org, re_caption, status, jpg) -> dict:
    ok = status == "success"
    meta = {
        "url": f"https://example.com/{key}.jpg", "caption": org, "key": key, "status": status,
        "error_message": None if ok else "HTTP Error 404: Not Found",
        "width": 40 if ok else None, "height": 30 if ok else None,
        "original_width": 400 if ok else None, "original_height": 300 if ok else None,
        "exif": "{}" if ok else None, "sha256": hashlib.sha256(jpg).hexdigest() if ok else None,
    }
    if re_caption is not None:
        meta["re_caption"] = None if re_caption == "null" else re_caption
    return meta


def write_img2dataset_shards(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for shard, rows in SHARDS.items():
        with tarfile.open(root / f"{shard}.tar", "w") as tar:
            for key, colour, org, re_caption, status in rows:
                jpg = _jpeg(colour)
                meta = _img2dataset_json(key, org, re_caption, status, jpg)
                for ext, data in (("jpg", jpg), ("txt", org.encode()), ("json", json.dumps(meta).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        (root / f"{shard}_stats.json").write_text("{}")  # img2dataset writes these next to the shards
    return root


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    return write_img2dataset_shards(tmp_path_factory.mktemp("recap") / "shards")


def recap_config(tmp_path: Path, **overrides) -> Path:
    """recap-datacomp.yaml with the tiny architecture and `overrides` {"section.key": value}."""
    raw = yaml.safe_load(RECAP.read_text())
    raw["model"] = str(TINY_ARCH)
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        raw.setdefault(section, {})[key] = value
    path = tmp_path / "recap-tiny.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_recap_config_names_the_published_l14_clips_224_shape():
    cfg = load_run_config(RECAP)
    assert Path(cfg.model).name == "ViT-L-14-CLIPS-224.json"
    arch = load_arch(cfg.model)
    v, t, cap = arch["vision_cfg"], arch["text_cfg"], arch["captioner_cfg"]
    assert arch["embed_dim"] == 768
    assert (v["width"], v["layers"], v["width"] // v["head_width"], v["patch_size"], v["image_size"]) == (1024, 24, 16, 14, 224)
    assert v["no_ln_pre"] is True and v["pool_type"] == "avg" and v["final_ln_after_pool"] is True
    assert v["norm_kwargs"]["eps"] == 1e-6 and t["norm_kwargs"]["eps"] == 1e-6
    assert (t["width"], t["layers"], t["heads"], t["context_length"]) == (768, 12, 12, 80)
    assert t["hf_tokenizer_name"] == "bert-base-uncased" and t["tokenizer_mode"] == "clips"
    assert (cap["width"], cap["layers"], cap["num_queries"]) == (768, 12, 128)
    pre = preprocess_cfg(arch)
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    assert pre["resize_mode"] == "squash" and pre["size"] == 224
    m = cfg.method
    assert m.views == ["web", "synthetic"] and m.strategy == "subcaption" and m.captioner
    assert m.k + 3 == t["context_length"]  # the 80-token text input: K caption tokens + bos, eos, cls
    assert (m.contrastive_weight, m.caption_weight, m.caption_positions) == (1.0, 2.0, 0)
    assert cfg.data.web_sources == (CaptionSource("member", "txt"),)
    assert cfg.data.synthetic_sources == (CaptionSource("json", "re_caption"),)
    assert cfg.data.require_json_status == "success"


def test_default_caption_sources_are_the_synthetic_world_layout():
    cfg = load_run_config("configs/clips/tiny.yaml")
    assert cfg.data.web_sources == (CaptionSource("json", "web_caption"), CaptionSource("member", "txt"))
    assert cfg.data.synthetic_sources == (CaptionSource("json", "synthetic_caption"),)
    assert cfg.data.require_json_status is None
    reader = CaptionReader(cfg.data)
    both = {"txt": b" from txt ", "json": json.dumps({"web_caption": "from json", "synthetic_caption": " syn "}).encode()}
    assert reader.captions(both) == ("from json", "syn")
    assert reader.captions({"txt": b"only txt"}) == ("only txt", "")  # json web_caption absent: falls back to txt


@pytest.mark.parametrize("key, value, match", [
    ("synthetic_caption_key", "json:", "names no json field"),
    ("synthetic_caption_key", "meta:re_caption", "unknown caption source"),
    ("web_caption_key", "re caption", "unknown caption source"),
    ("web_caption_key", "jpg", "image, not a caption"),
    ("web_caption_key", "json", "json, not a caption"),
    ("web_caption_key", [], "not a caption source"),
    ("synthetic_caption_key", ["json:re_caption", 3], "is not a string"),
    ("require_json_status", "", "require_json_status"),
])
def test_invalid_caption_sources_are_a_value_error_at_load(tmp_path, key, value, match):
    with pytest.raises(ValueError, match=match):
        load_run_config(recap_config(tmp_path), overrides={f"data.{key}": value})


def test_caption_sources_accept_lists_and_member_extensions(tmp_path):
    cfg = load_run_config(recap_config(tmp_path), overrides={"data.web_caption_key": ["json:caption", "TXT"]})
    assert cfg.data.web_sources == (CaptionSource("json", "caption"), CaptionSource("member", "txt"))


@pytest.mark.parametrize("shard", sorted(SHARDS))
def test_loader_yields_image_and_both_captions_per_key_and_counts_bad_samples(shards, tmp_path, shard):
    good = GOOD[shard]
    cfg = load_run_config(recap_config(tmp_path), overrides={
        "method.strategy": "full", "method.captioner": False, "data.shuffle_buffer": 1,
        "data.shuffle_initial": 1, "optim.batch_size": len(good)})
    arch = load_arch(cfg.model)
    tok, transform = build_tokenizer(arch["text_cfg"]), image_transform(arch)
    stream = ShardStream([str(shards / f"{shard}.tar")], tok, transform, cfg)
    batch = next(iter(stream))  # no shuffling, one shard: the good samples in shard order
    assert batch.keys == [r[0] for r in good]
    for i, (key, colour, org, re_caption, _) in enumerate(good):
        torch.testing.assert_close(batch.images[i], transform(load_rgb(_jpeg(colour))), rtol=0, atol=0)
        web, syn = tok.encode(org), tok.encode(re_caption)
        assert batch.web_ids[i, : len(web) + 2].tolist() == [tok.bos_id, *web, tok.eos_id], key
        assert batch.syn_ids[i, : len(syn) + 2].tolist() == [tok.bos_id, *syn, tok.eos_id], key
    expected = {"00000": {"missing synthetic caption": 1, STATUS_SKIP: 1},
                "00001": {"missing web caption": 1, "missing synthetic caption": 1}}[shard]
    assert dict(stream.skipped) == expected
    bad = {"00000": ["000000002 (missing synthetic caption)", f"000000004 ({STATUS_SKIP})"],
           "00001": ["000010001 (missing web caption)", "000010003 (missing synthetic caption)"]}[shard]
    assert stream.skipped_keys == bad


def test_reader_maps_img2dataset_fields(tmp_path):
    cfg = load_run_config(recap_config(tmp_path))
    reader = CaptionReader(cfg.data)
    jpg = _jpeg((1, 2, 3))
    sample = {"__key__": "000000000", "jpg": jpg, "txt": b"red mug on sale",
              "json": json.dumps(_img2dataset_json("000000000", "red mug on sale", "A red mug.", "success", jpg)).encode()}
    meta = reader.meta(sample)
    assert reader.status_ok(meta) and reader.captions(sample, meta) == ("red mug on sale", "A red mug.")
    assert not reader.status_ok({**meta, "status": "failed_to_resize"}) and not reader.status_ok({})
    with pytest.raises(ValueError):  # a non-string caption field: "unreadable captions" in the stream
        reader.captions({**sample, "json": json.dumps({**meta, "re_caption": 7}).encode()})


def test_world_default_keys_on_recap_shards_fail_before_training(shards, tmp_path):
    """The synthetic-world defaults find no synthetic caption in img2dataset shards: one clear error."""
    cfg = load_run_config(recap_config(tmp_path), overrides={
        "data.synthetic_caption_key": "json:synthetic_caption", "data.require_json_status": None})
    with pytest.raises(ValueError, match=r'synthetic caption \(json "synthetic_caption"; data.synthetic_caption_key\)'):
        check_caption_fields(list_shards(shards), cfg)
    check_caption_fields(list_shards(shards), load_run_config(recap_config(tmp_path)))  # the recap keys: fine


def test_clips_train_runs_on_img2dataset_shards_with_the_recap_keys(shards, tmp_path, capsys):
    cfg = recap_config(tmp_path, **{
        "method.k": 16, "data.shuffle_buffer": 4, "data.shuffle_initial": 2, "optim.steps": 2,
        "optim.batch_size": 4, "optim.warmup_steps": 1, "run.checkpoint_every": 2, "run.keep_checkpoints": 1,
        "run.log_every": 1, "run.grad_checkpointing": False, "run.precision": "fp32"})
    out = tmp_path / "run"
    assert list_shards(shards) == [str(shards / "00000.tar"), str(shards / "00001.tar")]
    assert train.main(["--config", str(cfg), "--data", str(shards), "--out", str(out)]) == 0
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["web"] > 0 and r["syn"] > 0 and r["caption"] > 0 for r in rows)
    recorded = json.loads((out / "run_config.json").read_text())["data"]
    assert recorded["synthetic_caption_key"] == "json:re_caption" and recorded["web_caption_key"] == "txt"
    assert (out / "export" / "open_clip_config.json").is_file()
    if (out / "skipped.json").is_file():
        reasons = json.loads((out / "skipped.json").read_text())["reasons"]
        assert set(reasons) <= {"missing synthetic caption", "missing web caption", STATUS_SKIP}, reasons
