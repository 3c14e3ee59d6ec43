"""4-bit and 8-bit loading for chat (bitsandbytes on CPU): the LM is quantized, tower + projector are not."""
from __future__ import annotations

import pytest
import torch

from llava_train.chat import cli as chat
from llava_train.chat.session import load_llava
from llava_train.tiny import make_tiny_llava
from tests.chat_helpers import make_image


@pytest.fixture(scope="module")
def wide_llava_dir(tmp_path_factory):
    # bitsandbytes' 4-bit CPU kernel needs Linear input widths that are multiples of 64
    return make_tiny_llava(tmp_path_factory.mktemp("llava64") / "tiny-llava-64", text_hidden=64)


@pytest.mark.parametrize("quant, layer_cls", [("4bit", "Linear4bit"), ("8bit", "Linear8bitLt")])
def test_quantized_loading_keeps_tower_and_projector(wide_llava_dir, quant, layer_cls):
    model, _ = load_llava(wide_llava_dir, quant=quant, device="cpu")
    kinds = {name: type(m).__name__ for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    lm = [k for n, k in kinds.items() if n.startswith("model.language_model.")]
    kept = [k for n, k in kinds.items() if n.startswith(("model.vision_tower.", "model.multi_modal_projector."))]
    assert lm and set(lm) == {layer_cls}
    assert kept and set(kept) == {"Linear"}
    assert model.model.multi_modal_projector.linear_1.weight.dtype == torch.float32
    assert model.model.vision_tower.layers[0].attention.q_proj.weight.dtype == torch.float32


def test_one_shot_4bit(wide_llava_dir, tmp_path, capsys):
    image = make_image(tmp_path / "img.png")
    args = ["--model", str(wide_llava_dir), "--image", str(image), "--prompt", "What is in the image?",
            "--temperature", "0", "--max-new-tokens", "8", "--device", "cpu"]
    assert chat.main(args + ["--load-4bit"]) == 0
    answer_4bit = capsys.readouterr().out
    assert answer_4bit.strip()
    assert chat.main(args) == 0
    assert capsys.readouterr().out.strip()  # full precision runs the same prompt too


def test_one_bnb_config_for_training_and_chat():
    from llava_train.chat.session import ChatInputError, quantization_config
    from llava_train.model import UNQUANTIZED_MODULES, bnb_config

    four = bnb_config(4, torch.bfloat16)
    assert four.load_in_4bit and not four.load_in_8bit
    assert four.bnb_4bit_quant_type == "nf4" and four.bnb_4bit_use_double_quant
    assert four.bnb_4bit_compute_dtype == torch.bfloat16
    assert four.llm_int8_skip_modules == list(UNQUANTIZED_MODULES) == [
        "model.vision_tower", "model.multi_modal_projector", "lm_head"]
    eight = quantization_config("8bit", torch.float16)
    assert eight.load_in_8bit and not eight.load_in_4bit and eight.llm_int8_skip_modules == list(UNQUANTIZED_MODULES)
    assert quantization_config("4bit", torch.float32).to_dict() == bnb_config(4, torch.float32).to_dict()
    assert quantization_config(None, torch.float32) is None
    with pytest.raises(ChatInputError, match="^unknown quantization '2bit'; known: 4bit, 8bit$"):
        quantization_config("2bit", torch.float32)
    with pytest.raises(ValueError, match="4 or 8"):
        bnb_config(2, torch.float32)
