"""Each bad input to `clips-llava chat` is one line (exit 2 where the run cannot go on), never a traceback."""
from __future__ import annotations

import io
import json

import pytest
import torch

from llava_train.chat import cli as chat
from tests.chat_helpers import make_image

ONE_SHOT = ["--prompt", "Hi", "--temperature", "0", "--max-new-tokens", "4", "--device", "cpu"]


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("clips-llava chat: error:"), err
    assert "Traceback" not in err
    for n in needles:
        assert n in err, err
    return err


def test_missing_model_dir(tmp_path, capsys):
    assert chat.main(["--model", str(tmp_path / "nope"), *ONE_SHOT]) == 2
    _one_line_error(capsys, "not found", "nope")


def test_hub_id_offline_not_cached(capsys):
    # an owner/name that is no local directory goes to the hub cache; offline and absent: one line
    assert chat.main(["--model", "no-such-owner/no-such-llava", *ONE_SHOT]) == 2
    _one_line_error(capsys, "not found", "no-such-owner/no-such-llava")


@pytest.mark.parametrize("content, needle", [
    ({"model_type": "bert"}, "not a Llava model"),
    (None, "no config.json"),
    ("{not json", "cannot read"),
])
def test_not_a_llava_dir(tmp_path, capsys, content, needle):
    d = tmp_path / "model"
    d.mkdir()
    if content is not None:
        (d / "config.json").write_text(content if isinstance(content, str) else json.dumps(content))
    assert chat.main(["--model", str(d), *ONE_SHOT]) == 2
    _one_line_error(capsys, needle)


def test_llava_config_without_weights(tiny_llava_dir, tmp_path, capsys):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text((tiny_llava_dir / "config.json").read_text())
    assert chat.main(["--model", str(d), *ONE_SHOT]) == 2
    _one_line_error(capsys, "cannot load")


def test_base_without_adapter(tiny_llava_dir, capsys):
    assert chat.main(["--model", str(tiny_llava_dir), "--base", str(tiny_llava_dir), *ONE_SHOT]) == 2
    _one_line_error(capsys, "--base is only for LoRA")


@pytest.mark.parametrize("kind", ["missing", "corrupt", "directory"])
def test_bad_image_one_shot_exits_2(tiny_llava_dir, tmp_path, capsys, kind):
    path = tmp_path / "img.png"
    if kind == "corrupt":
        path.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    elif kind == "directory":
        path.mkdir()
    assert chat.main(["--model", str(tiny_llava_dir), "--image", str(path), *ONE_SHOT]) == 2
    _one_line_error(capsys, "img.png")
    assert capsys.readouterr().out == ""


def test_truncated_image_one_shot_exits_2(tiny_llava_dir, tmp_path, capsys):
    good = make_image(tmp_path / "good.png", size=(64, 64))
    bad = tmp_path / "cut.png"
    bad.write_bytes(good.read_bytes()[:60])
    assert chat.main(["--model", str(tiny_llava_dir), "--image", str(bad), *ONE_SHOT]) == 2
    _one_line_error(capsys, "cut.png")


def test_bad_image_interactive_continues(tiny_llava_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("/image also-missing.png\nHello\n"))
    rc = chat.main(["--model", str(tiny_llava_dir), "--image", str(tmp_path / "missing.png"),
                    "--temperature", "0", "--max-new-tokens", "4", "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "error: image not found" in err and "missing.png" in err and "Traceback" not in err
    assert out.count("error: image not found") == 1  # the /image one, one line
    assert "ASSISTANT: " in out.split("Hello")[1]  # and the session went on


@pytest.mark.parametrize("argv, needle", [
    (["--temperature", "-1"], "--temperature"),
    (["--max-new-tokens", "0"], "--max-new-tokens"),
])
def test_bad_numbers(tiny_llava_dir, capsys, argv, needle):
    assert chat.main(["--model", str(tiny_llava_dir), "--prompt", "Hi", *argv]) == 2
    _one_line_error(capsys, needle)


def test_empty_prompt_from_stdin(tiny_llava_dir, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("  \n"))
    assert chat.main(["--model", str(tiny_llava_dir), "--prompt", "-"]) == 2
    _one_line_error(capsys, "empty")


def test_usage_errors_exit_2(tiny_llava_dir, capsys):
    assert chat.main(["--prompt", "Hi"]) == 2  # --model missing
    assert chat.main(["--model", str(tiny_llava_dir), "--load-4bit", "--load-8bit"]) == 2
    assert chat.main(["--model", str(tiny_llava_dir), "--device", "tpu"]) == 2
    capsys.readouterr()
    assert chat.main(["--help"]) == 0
    assert "example:" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tiny_llava_dir, capsys):
    assert chat.main(["--model", str(tiny_llava_dir), "--prompt", "Hi", "--device", "cuda"]) == 2
    _one_line_error(capsys, "CUDA")


@pytest.mark.parametrize("name, hub", [
    ("llava-hf/llava-1.5-7b-hf", True), ("openai/clip-vit-large-patch14-336", True), ("UCSC-VLAA/ViT_L.14", True),
    ("gpt2", False), ("./llava", False), ("../llava", False), ("/abs/llava", False), ("runs/eval/llava", False),
    ("~/llava", False), ("owner/", False), ("owner/with space", False),
])
def test_one_hub_id_shape_for_chat_eval_and_towers(name, hub):
    from clips_tower.inputs import is_hub_id

    assert is_hub_id(name) is hub


def test_one_llava_dir_check(tiny_llava_dir, tmp_path):
    from clips_tower.inputs import InputError, check_model_type, is_llava_dir

    assert is_llava_dir(tiny_llava_dir) and is_llava_dir(str(tiny_llava_dir))
    for name, config in {"bert": json.dumps({"model_type": "bert"}), "broken": "{not json", "list": "[]",
                         "empty": None}.items():
        d = tmp_path / name
        d.mkdir()
        if config is not None:
            (d / "config.json").write_text(config)
        assert not is_llava_dir(d), name
    assert not is_llava_dir(tmp_path / "missing") and not is_llava_dir("llava-hf/llava-1.5-7b-hf")
    with pytest.raises(InputError, match=r"bert: not a Llava model directory \(config.json model_type='bert', "
                                         r"expected 'llava'\)"):
        check_model_type(tmp_path / "bert", {"model_type": "bert"}, "llava")
