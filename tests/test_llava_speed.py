"""Training speed-ups keep the numbers: packing, label-only logits, the frozen-tower feature cache.

    pytest -q tests/test_llava_speed.py

Packed rows give each sample the logits it has alone (block-diagonal attention from position_ids);
the loss with packing / label-only logits / cached features equals the stock padded loss, gradients
included; the cache round-trips through disk and is keyed by the tower weights; a stage-1 run with
every speed-up on follows the same loss curve as one with all of them off.
"""
from __future__ import annotations

import json

import pytest
import torch

from tests.llava_helpers import make_lm, make_tower


@pytest.fixture(scope="module")
def parts(tiny_world, tmp_path_factory):
    from transformers import AutoProcessor

    from llava_train.data import LlavaDataset
    from llava_train.model import assemble_llava, image_seq_length

    tmp = tmp_path_factory.mktemp("llava_speed")
    tower, lm = make_tower(tmp / "tower"), make_lm(tiny_world, tmp / "lm")
    init = assemble_llava(tower, lm, tmp / "llava", template="vicuna_v1")
    processor = AutoProcessor.from_pretrained(init)
    ds = LlavaDataset(tiny_world / "llava/stage2.json", tiny_world / "llava/images", processor, "vicuna_v1", 512,
                      index_dir=tmp / "index", image_seq_length=image_seq_length(init))
    return {"tmp": tmp, "tower": tower, "lm": lm, "init": init, "ds": ds, "world": tiny_world}


def _model(parts, attn="sdpa", seed=0):
    from transformers import LlavaForConditionalGeneration

    model = LlavaForConditionalGeneration.from_pretrained(parts["init"], attn_implementation=attn)
    model.config.use_cache = model.config.text_config.use_cache = False  # a cache hides packed rows
    with torch.no_grad():  # the assembled projector is random but the same for every load; perturb the LM a bit
        torch.manual_seed(seed)
        for p in model.model.language_model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def _collators(ds, cached=False, max_length=None):
    from llava_train.data import LlavaCollator
    from llava_train.packing import PackingCollator

    args = (ds.tokenizer.pad_token_id, ds.image_token_id, ds.num_image_tokens, (3, 32, 32))
    return LlavaCollator(*args, cached_features=cached), PackingCollator(*args, max_length=max_length,
                                                                         cached_features=cached)


def _trainer(model, ds, tmp, label_logits_only=False, **kw):
    from llava_train.train import LlavaTrainingArguments
    from llava_train.trainer import LlavaTrainer

    args = LlavaTrainingArguments(output_dir=str(tmp / "trainer"), use_cpu=True, report_to=[],
                                  per_device_train_batch_size=8, label_logits_only=label_logits_only)
    return LlavaTrainer(model=model, args=args, train_dataset=ds, **kw)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_rows_give_each_sample_its_own_logits(parts, attn):
    ds = parts["ds"]
    text_only = [i for i in range(len(ds)) if ds.sample(i)["image"] is None]
    with_image = [i for i in range(len(ds)) if ds.sample(i)["image"] is not None]
    items = [ds[i] for i in with_image[:6] + text_only[:2]]
    pad, pack = _collators(ds, max_length=700)
    a, b = pad(items), pack(items)
    assert b["input_ids"].shape[0] < len(items) and b["pixel_values"].shape[0] == 6  # several images per row
    model = _model(parts, attn).eval()
    with torch.no_grad():
        out_a, out_b = model(**a), model(**b)
    from llava_train.packing import pack_rows

    lengths = [len(x["input_ids"]) for x in items]
    for r, row in enumerate(pack_rows(lengths, 700)):
        t = 0
        for i in row:
            n = lengths[i]
            torch.testing.assert_close(out_b.logits[r, t:t + n], out_a.logits[i, :n], atol=2e-5, rtol=1e-5)
            t += n
    torch.testing.assert_close(out_b.loss, out_a.loss, atol=1e-5, rtol=1e-5)  # same per-token mean


def test_fast_loss_paths_match_stock_loss_and_grads(parts):
    from llava_train.feature_cache import build_feature_cache

    ds = parts["ds"]
    items_idx = list(range(8))
    pad, _ = _collators(ds)
    stock = _model(parts)
    ref = stock(**pad([ds[i] for i in items_idx])).loss
    ref.backward()
    ref_grad = stock.model.multi_modal_projector.linear_1.weight.grad.clone()

    model = _model(parts)
    model.model.vision_tower.requires_grad_(False)
    cache = build_feature_cache(model, ds)  # attaches: items now carry image_row
    try:
        _, pack = _collators(ds, cached=True)
        batch = pack([ds[i] for i in items_idx])
        assert "pixel_values" not in batch and "image_rows" in batch
        trainer = _trainer(model, ds, parts["tmp"], feature_cache=cache, label_logits_only=True)
        loss = trainer.compute_loss(model, batch)
        n_items = (pad([ds[i] for i in items_idx])["labels"][:, 1:] != -100).sum()
        loss_n = trainer.compute_loss(model, batch, num_items_in_batch=n_items)  # the Trainer's GA path
    finally:
        ds.image_rows = None
    torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss_n, ref, atol=1e-5, rtol=1e-5)
    loss.backward()
    torch.testing.assert_close(model.model.multi_modal_projector.linear_1.weight.grad, ref_grad, atol=1e-6, rtol=1e-4)


def test_feature_cache_disk_roundtrip_and_tower_key(parts, tmp_path, caplog):
    from llava_train.feature_cache import build_feature_cache, tower_features

    ds = parts["ds"]
    model = _model(parts)
    model.model.vision_tower.requires_grad_(False)
    try:
        with pytest.raises(ValueError, match="frozen"):
            model.model.vision_tower.requires_grad_(True)
            build_feature_cache(model, ds)
        model.model.vision_tower.requires_grad_(False)
        first = build_feature_cache(model, ds, cache_dir=tmp_path)
        files = list(tmp_path.glob("features-*.safetensors"))
        assert len(files) == 1
        with caplog.at_level("INFO", logger="llava_train.feature_cache"):
            again = build_feature_cache(model, ds, cache_dir=tmp_path)
        assert "0 computed" in caplog.text
        assert torch.equal(first.features, again.features)
        path = ds.image_paths[3]
        px = ds.image_pixels(path)[None]
        torch.testing.assert_close(again.features[again.rows[path]], tower_features(model, px)[0])
        with torch.no_grad():
            next(model.model.vision_tower.parameters()).add_(0.1)
        build_feature_cache(model, ds, cache_dir=tmp_path)
        assert len(list(tmp_path.glob("features-*.safetensors"))) == 2  # other weights, other file
    finally:
        ds.image_rows = None


@pytest.mark.slow
def test_stage1_run_with_speedups_follows_the_same_losses(parts, tmp_path):
    from llava_train.train import main
    from tests.llava_helpers import REPO

    w = parts["world"] / "llava"
    # The tiny stage-1 recipe without DeepSpeed, so it runs in this process (torchrun runs are in test_llava_train).
    cfg = tmp_path / "stage1.yaml"
    cfg.write_text("".join(line for line in (REPO / "configs/llava/stage1_tiny.yaml").read_text().splitlines(True)
                           if not line.startswith("deepspeed:")))
    base = ["--config", str(cfg), "--model_name_or_path", str(parts["lm"]), "--vision_tower", str(parts["tower"]),
            "--data_path", str(w / "stage1.json"), "--image_folder", str(w / "images"), "--max_steps", "3"]
    assert main(base + ["--output_dir", str(tmp_path / "fast")]) == 0
    assert main(base + ["--output_dir", str(tmp_path / "plain"), "--feature_cache", "false", "--packing", "false",
                        "--label_logits_only", "false"]) == 0
    fast, plain = (json.loads((tmp_path / d / "run_report.json").read_text()) for d in ("fast", "plain"))
    assert fast["speedups"] == {"packing": True, "feature_cache": True, "label_logits_only": True}
    assert plain["speedups"] == {"packing": False, "feature_cache": False, "label_logits_only": False}
    assert [s for s, _ in fast["losses"]] == [1, 2, 3]
    for (_, a), (_, b) in zip(fast["losses"], plain["losses"]):
        assert abs(a - b) < 1e-4, (fast["losses"], plain["losses"])
    assert not list((tmp_path / "fast").glob("*feature*"))  # the saved model is a stock Llava, no cache inside


def test_length_group_mult_cuts_padding_and_keeps_every_sample():
    from llava_train.sampler import modality_length_grouped_indices

    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(50, 300, (160,), generator=g).tolist()  # with an image
    lengths += (-torch.randint(20, 90, (40,), generator=g)).tolist()  # text-only

    def padded(order):  # slots of batches of 8 padded to their longest sample
        return sum(8 * max(abs(lengths[i]) for i in order[k:k + 8]) for k in range(0, len(order), 8))

    one = modality_length_grouped_indices(lengths, 8, 1, torch.Generator().manual_seed(1))
    eight = modality_length_grouped_indices(lengths, 8, 1, torch.Generator().manual_seed(1), mult=8)
    assert sorted(one) == sorted(eight) == list(range(200))
    for k in range(0, 200, 8):
        assert len({lengths[i] > 0 for i in eight[k:k + 8]}) == 1  # still one modality per step
    assert padded(eight) < 0.9 * padded(one)
    again = modality_length_grouped_indices(lengths, 8, 1, torch.Generator().manual_seed(1), mult=8)
    assert again == eight  # deterministic in the seed (exact resume)
