"""A tiny stock `LlavaForConditionalGeneration` around an exported tiny CLIPS tower: forward, generate,
save, and reload in a fresh process that imports only transformers (not this project)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlavaForConditionalGeneration, ViTConfig

from clips_tower.adapter import (export_tower, llava_block, load_tower_model, load_tower_processor, read_tower_info,
                                 tower_llava_block, vision_config)
from clips_tower.adapter.processors import sample_images
from llava_train.llava_config import build_llava_config, llava_processor_kwargs

IMAGE_TOKEN = 63


def _text_config():
    return LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def test_build_llava_config_settings():
    vit336 = ViTConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
                       image_size=336, patch_size=14)
    cfg = build_llava_config(vit336, _text_config(), image_token_index=IMAGE_TOKEN)
    assert (cfg.image_seq_length, cfg.vision_feature_layer, cfg.vision_feature_select_strategy) == (576, -2, "default")
    assert (cfg.projector_hidden_act, cfg.multimodal_projector_bias, cfg.image_token_index) == ("gelu", True, IMAGE_TOKEN)
    full = build_llava_config(vit336, _text_config().to_dict(), image_token_index=5,
                              llava=llava_block(vit336, vision_feature_select_strategy="full"))
    assert full.image_seq_length == 577 and full.text_config.model_type == "llama"
    assert full.vision_feature_select_strategy == "full"
    with pytest.raises(ValueError, match="known: mlp2x_gelu"):
        build_llava_config(vit336, _text_config(), image_token_index=5, projector="linear")
    with pytest.raises(ValueError, match="out of range"):
        build_llava_config(vit336, _text_config(), image_token_index=5, llava=llava_block(vit336, vision_feature_layer=-9))
    with pytest.raises(ValueError, match="exported tower directory"):
        build_llava_config("/nonexistent", _text_config(), image_token_index=5)


def test_tiny_llava_with_clips_tower_roundtrip(tmp_path):
    tower = export_tower("tiny", tmp_path / "tower", random_init=True)
    cfg = build_llava_config(tower, _text_config(), image_token_index=IMAGE_TOKEN)
    vcfg = vision_config(tower)
    assert cfg.image_seq_length == 16 and llava_processor_kwargs(vcfg, tower_llava_block(tower))["patch_size"] == 8
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(cfg).eval()
    missing = model.model.vision_tower.load_state_dict(load_tower_model(tower).state_dict(), strict=True)
    assert not missing.missing_keys and type(model.model.vision_tower).__name__ == "ViTModel"

    pixels = load_tower_processor(tower)(sample_images()[2][1], return_tensors="pt")["pixel_values"]  # RGBA portrait
    ids = torch.tensor([[1] + [IMAGE_TOKEN] * cfg.image_seq_length + [5, 6, 7]])  # (1, 20)
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pixels, labels=ids)
        gen = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=4, do_sample=False)
    assert torch.isfinite(out.loss) and out.logits.shape == (1, ids.shape[1], 64)
    assert gen.shape == (1, ids.shape[1] + 4)

    # a wrong image-token count fails loudly in stock transformers
    with pytest.raises(ValueError, match="do not match"):
        model(input_ids=torch.cat([ids[:, :1], ids[:, 2:]], dim=1), pixel_values=pixels)  # one image token short

    saved = tmp_path / "llava"
    model.save_pretrained(saved)
    load_tower_processor(tower).save_pretrained(saved)
    np.save(tmp_path / "logits.npy", out.logits.numpy())
    (tmp_path / "expect.json").write_text(json.dumps({"ids": ids.tolist(), "gen": gen.tolist()}))
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, torch
        from PIL import Image
        from transformers import AutoImageProcessor, LlavaForConditionalGeneration
        d = {str(tmp_path)!r}
        e = json.load(open(d + "/expect.json"))
        model = LlavaForConditionalGeneration.from_pretrained(d + "/llava").eval()
        proc = AutoImageProcessor.from_pretrained(d + "/llava", backend="pil")
        img = Image.fromarray(np.load(d + "/img.npy"))
        pixels = proc(img, return_tensors="pt")["pixel_values"]
        ids = torch.tensor(e["ids"])
        with torch.no_grad():
            logits = model(input_ids=ids, pixel_values=pixels).logits.numpy()
            gen = model.generate(input_ids=ids, pixel_values=pixels, max_new_tokens=4, do_sample=False)
        diff = float(np.abs(logits - np.load(d + "/logits.npy")).max())
        assert not any(m.startswith(("clips_tower", "llava_train", "clips_llava_eval")) for m in sys.modules), "project imported"
        print(json.dumps({{"diff": diff, "gen_equal": gen.tolist() == e["gen"],
                          "tower": type(model.model.vision_tower).__name__}}))
    """)
    np.save(tmp_path / "img.npy", np.asarray(sample_images()[2][1]))
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert got == {"diff": pytest.approx(0.0, abs=1e-5), "gen_equal": True, "tower": "ViTModel"}


def test_one_image_size_normaliser_and_one_source_of_clips_statistics():
    from types import SimpleNamespace

    from clips_tower.adapter.registry import PREPROCESS
    from clips_tower.export import preprocess_cfg
    from llava_train.model import tower_image_shape, tower_image_size

    assert tower_image_size(SimpleNamespace(image_size=336)) == 336
    assert tower_image_size(SimpleNamespace(image_size=(224, 224))) == 224
    assert tower_image_shape(SimpleNamespace(image_size=[64, 64], num_channels=3)) == (3, 64, 64)
    pre = preprocess_cfg({"vision_cfg": {"image_size": 32}})
    clips = PREPROCESS["clips"]
    assert pre["size"] == 32 and pre["interpolation"] == clips["interpolation"] == "bilinear"
    assert pre["resize_mode"] == clips["resize_mode"] == "squash"
    assert pre["mean"] == list(clips["mean"]) and pre["std"] == list(clips["std"])  # lists, as in open_clip JSON


def test_the_llava_block_is_one_source(tmp_path):
    """The export writes `llava_block`'s result; LlavaConfig, processor and assembly read the recorded block
    (a plain HF tower dir gets the same block derived); a block the tower contradicts is refused."""
    import shutil

    from llava_train.model import check_tower_tokens

    tower = export_tower("tiny", tmp_path / "tower", random_init=True)
    vcfg = vision_config(tower)
    recorded = read_tower_info(tower)["llava"]
    assert recorded == llava_block(vcfg) == tower_llava_block(tower)
    plain = tmp_path / "plain"  # an HF vision tower dir without tower_info.json
    shutil.copytree(tower, plain)
    (plain / "tower_info.json").unlink()
    assert tower_llava_block(plain) == recorded and tower_llava_block(vcfg) == recorded

    # the recorded block, not a re-derivation, is what the LlavaConfig and the processor take
    edited = {**recorded, "vision_feature_layer": -1, "num_additional_image_tokens": 2}
    (tmp_path / "tower" / "tower_info.json").write_text(json.dumps({**read_tower_info(tower), "llava": edited}))
    assert build_llava_config(tower, _text_config(), image_token_index=IMAGE_TOKEN).vision_feature_layer == -1
    assert llava_processor_kwargs(vcfg, tower_llava_block(tower)) == {
        "patch_size": 8, "vision_feature_select_strategy": "default", "num_additional_image_tokens": 2}

    model = load_tower_model(tower)
    check_tower_tokens(model, recorded)  # agrees with the measured output: no error
    check_tower_tokens(model, llava_block(vcfg, vision_feature_select_strategy="full"))
    with pytest.raises(ValueError, match="non-patch tokens"):
        check_tower_tokens(model, {**recorded, "image_seq_length": 15})
    with pytest.raises(ValueError, match="image_seq_length 16"):
        check_tower_tokens(model, {**recorded, "vision_feature_select_strategy": "full"})
    (tmp_path / "tower" / "tower_info.json").write_text(json.dumps({"format": "clips-llava-tower/1"}))
    with pytest.raises(ValueError, match="no 'llava' block"):
        tower_llava_block(tower)
