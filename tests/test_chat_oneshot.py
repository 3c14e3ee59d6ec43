"""One-shot `clips-llava chat --prompt`, the session logic, LoRA adapters, and the tiny Llava helper."""
from __future__ import annotations

import io
import threading

import pytest
import torch

from llava_train.chat import cli as chat
from llava_train.chat.session import ChatSession, load_llava
from tests.chat_helpers import make_image, make_lora_adapter


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return make_image(tmp_path_factory.mktemp("img") / "red.png")


@pytest.fixture(scope="module")
def loaded(tiny_llava_dir):
    return load_llava(tiny_llava_dir, device="cpu")


def test_tiny_llava_is_stock_hf(tiny_llava_dir, image):
    """The helper's directory loads with plain transformers and expands <image> to 16 tokens."""
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_llava_dir)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir)
    assert type(model.config.vision_config).__name__ == "ViTConfig"
    assert model.config.vision_feature_layer == -2 and model.config.image_seq_length == 16
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Hi"}]}]
    prompt = processor.apply_chat_template(msgs, add_generation_prompt=True)
    assert prompt.endswith(" USER: <image>\nHi ASSISTANT:")
    inputs = processor(images=Image.open(image), text=prompt, return_tensors="pt")
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 16
    out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4


def test_one_shot_matches_plain_transformers(tiny_llava_dir, image, loaded, capsys):
    """The CLI answer equals a hand-written processor + generate call on the same prompt."""
    rc = chat.main(["--model", str(tiny_llava_dir), "--image", str(image), "--prompt", "What is in the image?",
                    "--temperature", "0", "--max-new-tokens", "12", "--device", "cpu"])
    out = capsys.readouterr().out
    assert rc == 0
    model, processor = loaded
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}]
    from PIL import Image

    inputs = processor(images=Image.open(image).convert("RGB"),
                       text=processor.apply_chat_template(msgs, add_generation_prompt=True), return_tensors="pt")
    ids = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    expected = processor.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert expected and out == expected + "\n"


def test_prompt_from_stdin_and_sampling_seed(tiny_llava_dir, monkeypatch, capsys):
    args = ["--model", str(tiny_llava_dir), "--prompt", "-", "--max-new-tokens", "16", "--device", "cpu"]
    answers = []
    for extra in (["--temperature", "1.0", "--seed", "3"], ["--temperature", "1.0", "--seed", "3"], ["--temperature", "0"]):
        monkeypatch.setattr("sys.stdin", io.StringIO("Describe the image.\n"))
        assert chat.main(args + extra) == 0
        answers.append(capsys.readouterr().out)
    assert answers[0] == answers[1]  # same seed, same sample
    assert answers[0] != answers[2]  # sampling is not greedy decoding


def test_history_image_in_first_turn_and_reset(loaded, image):
    model, processor = loaded
    session = ChatSession(model, processor, temperature=0, max_new_tokens=4)
    session.set_image(image)
    a1 = session.generate("What is in the image?")
    session.generate("And then?")
    roles = [m["role"] for m in session.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    parts = [[p["type"] for p in m["content"]] for m in session.messages]
    assert parts[0] == ["image", "text"] and parts[2] == ["text"]
    assert session.messages[1]["content"][0]["text"] == a1
    # the second prompt holds the first exchange, rendered by the model's own template
    _, inputs = session._inputs("third")
    text = processor.decode(inputs["input_ids"][0])
    assert "What is in the image?" in text and "And then?" in text and text.count("USER:") == 3
    assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 16
    session.reset()
    assert session.messages == [] and session.image is not None
    session.set_image(image)
    assert session.messages == []


def test_stream_yields_text_while_generating(loaded):
    """Chunks reach the caller before generation ends: a gate holds the last steps until the
    first chunk has arrived (no gate release -> the test would time out and fail)."""
    model, processor = loaded
    session = ChatSession(model, processor, temperature=0, max_new_tokens=24)
    gate, steps = threading.Event(), []

    def hold(input_ids, scores):
        steps.append(1)
        if len(steps) >= 20:
            assert gate.wait(10), "generation was never released: nothing was streamed early"
        return scores

    base_kwargs = session.generation_kwargs
    session.generation_kwargs = lambda: {**base_kwargs(), "logits_processor": [hold]}
    chunks = []
    for chunk in session.stream("Describe the image."):
        if not chunks:
            assert len(steps) <= 20 and session.messages == []  # still generating
            gate.set()
        chunks.append(chunk)
    assert len(chunks) >= 2
    assert "".join(chunks).strip() == session.messages[-1]["content"][0]["text"]


def test_lora_adapter_with_base(tiny_llava_dir, tmp_path, capsys):
    adapter = make_lora_adapter(tiny_llava_dir, tmp_path / "adapter")
    common = ["--prompt", "Describe the image.", "--temperature", "0", "--max-new-tokens", "12", "--device", "cpu"]
    assert chat.main(["--model", str(tiny_llava_dir), *common]) == 0
    base_answer = capsys.readouterr().out
    assert chat.main(["--model", str(adapter), "--base", str(tiny_llava_dir), *common]) == 0
    lora_answer = capsys.readouterr().out
    assert lora_answer.strip() and lora_answer != base_answer  # the adapter really applied
    model, _ = load_llava(adapter, base=tiny_llava_dir, device="cpu")
    assert type(model).__name__ == "LlavaForConditionalGeneration"  # merged back to plain Llava
    # without --base: a one-line error and exit 2
    assert chat.main(["--model", str(adapter), *common]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--base" in err
    assert torch.is_grad_enabled()  # inference_mode did not leak out of the session
