"""`clips-llava tower export|check|list` on tiny towers: sources, refusals, failure exit codes."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from clips_tower.adapter.cli import main
from tests.tower_helpers import TINY_JSON, TINY_VISION, write_arch


def _run(argv, capsys):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_export_and_check_tiny_json(tmp_path, capsys):
    out = tmp_path / "tiny"
    rc, stdout, _ = _run(["export", "--model", str(TINY_JSON), "--random-init", "--out", str(out)], capsys)
    assert rc == 0 and "exported" in stdout
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "preprocessor_config.json", "tower_info.json"}
    assert not list(tmp_path.glob(".tiny.tmp-*"))  # atomic: no temp dir left
    info = json.loads((out / "tower_info.json").read_text())
    assert info["llava"] == {"vision_feature_layer": -2, "vision_feature_select_strategy": "default",
                             "image_seq_length": 16, "num_additional_image_tokens": 1}
    rc, stdout, _ = _run(["check", "--model", str(TINY_JSON), "--random-init", "--out", str(out), "--json"], capsys)
    report = json.loads(stdout)
    assert rc == 0 and report["ok"]
    assert any(r["what"].startswith("pixels") and "[I;16]" in r["what"] for r in report["rows"])

    # the check can fail: perturb one exported tensor -> exit 1
    sd = load_file(str(out / "model.safetensors"))
    key = "encoder.layer.1.intermediate.dense.bias"  # transformers saves the classic ViT layout
    sd[key] = sd[key] + 0.05
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    rc, stdout, _ = _run(["check", "--model", str(TINY_JSON), "--random-init", "--out", str(out)], capsys)
    assert rc == 1 and "PARITY FAILED" in stdout

    # overwrite protection, then --overwrite
    rc, _, err = _run(["export", "--model", "tiny", "--random-init", "--out", str(out)], capsys)
    assert rc == 2 and "exists" in err
    rc, _, _ = _run(["export", "--model", "tiny", "--random-init", "--out", str(out), "--overwrite", "--check"], capsys)
    assert rc == 0


def test_local_open_clip_dir_source(tmp_path, capsys):
    """The directory format CLIPS pretraining writes: open_clip_config.json + open_clip_model.safetensors."""
    import open_clip

    cfg = json.loads(TINY_JSON.read_text())
    cfg.pop("captioner_cfg", None)
    torch.manual_seed(0)
    model = open_clip.CLIP(**cfg)
    with torch.no_grad():
        for p in model.visual.parameters():
            p.add_(0.01 * torch.randn_like(p))  # non-constant norms/biases
    src = tmp_path / "clips-tiny"
    src.mkdir()
    pre = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "interpolation": "bilinear", "resize_mode": "squash"}
    (src / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": pre}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(src / "open_clip_model.safetensors"))
    loaded, _ = open_clip.create_model_from_pretrained(f"local-dir:{src}")  # the format open_clip reads
    assert torch.equal(loaded.visual.conv1.weight, model.visual.conv1.weight)

    out = tmp_path / "exported"
    assert _run(["export", "--model", str(src), "--out", str(out)], capsys)[0] == 0
    rc, stdout, _ = _run(["check", "--model", f"local-dir:{src}", "--out", str(out)], capsys)
    assert rc == 0 and "PARITY OK" in stdout
    from clips_tower.adapter import load_tower_model

    exported = load_tower_model(out)
    assert torch.equal(exported.embeddings.patch_embeddings.projection.weight, model.visual.conv1.weight)


def test_hf_clip_dir_source(tmp_path, capsys):
    """An HF CLIP vision model (the LLaVA-1.5 tower's format) stays a CLIPVisionModel."""
    from transformers import AutoModel, CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    src = tmp_path / "hf-clip"
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                              image_size=28, patch_size=14, hidden_act="quick_gelu")
    CLIPVisionModel(config).save_pretrained(src)
    CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}).save_pretrained(src)
    out = tmp_path / "exported"
    assert _run(["export", "--model", str(src), "--out", str(out)], capsys)[0] == 0
    assert type(AutoModel.from_pretrained(out)).__name__ == "CLIPVisionModel"
    rc, stdout, _ = _run(["check", "--model", str(src), "--out", str(out)], capsys)
    assert rc == 0, stdout


@pytest.mark.parametrize("vision_extra,needle", [
    ({"attentional_pool": True, "attn_pooler_heads": 2, "attn_pooler_queries": 4}, "attentional pooling"),
    ({"ls_init_value": 1e-5}, "layer scale"),
    ({"qk_norm": True}, "custom attention block"),
    ({"layers": [1, 1, 1, 1], "width": 16, "image_size": 32}, "ResNet trunk"),
], ids=["attn-pool", "layer-scale", "qk-norm", "resnet"])
def test_unsupported_architectures_refused(tmp_path, capsys, vision_extra, needle):
    arch = write_arch(tmp_path, "odd", {**TINY_VISION, **vision_extra})
    rc, _, err = _run(["export", "--model", str(arch), "--random-init", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv,needle", [
    (["--model", "clips-l14-999"], "cannot resolve source"),
    (["--model", "hf-hub:UCSC-VLAA/ViT-L-14-CLIPS-Recap-DataComp-1B"], "offline (HF_HUB_OFFLINE=1)"),
    (["--model", "clips-l14-336"], "offline (HF_HUB_OFFLINE=1)"),
    (["--model", "openai/clip-vit-large-patch14-336"], "offline (HF_HUB_OFFLINE=1)"),
    (["--model", "tiny"], "no published weights"),
    (["--model", str(TINY_JSON)], "pass --random-init"),
    (["--model", "hf-hub:UCSC-VLAA/x", "--random-init"], "needs an architecture"),
], ids=["unknown", "hub-offline", "registry-hub-offline", "hf-id-offline", "no-weights", "json-no-init", "hub-init"])
def test_bad_sources_one_line_exit_2(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    rc, _, err = _run(["export", *argv, "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and needle in err, err
    assert len(err.strip().splitlines()) == 1


def test_help_and_list(capsys):
    for sub in ("export", "check", "list"):
        with pytest.raises(SystemExit) as e:
            main([sub, "--help"])
        assert e.value.code == 0
        assert "example:\n  clips-llava tower" in capsys.readouterr().out
    rc, stdout, _ = _run(["list"], capsys)
    assert rc == 0 and "clips-h14-224" in stdout and "openai-clip-l14-336" in stdout
    with pytest.raises(SystemExit) as e:
        main(["export"])  # missing --model/--out
    assert e.value.code == 2
