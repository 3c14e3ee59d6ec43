"""A tiny random stock-HF Llava (model + processor) for tests and benchmarks, built offline in about a second,
like transformers' own model testers.

    from llava_train.tiny import make_tiny_llava
    path = make_tiny_llava(tmp_path / "tiny-llava")      # then load it like any HF Llava:
    model = LlavaForConditionalGeneration.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)

    python -m llava_train.tiny /tmp/tiny-llava           # write one by hand

Shapes: a CLIPS-style `ViTModel` tower (32 px images, patch 8 => 16 patches + CLS, hidden 32,
2 layers), a squash `CLIPImageProcessor` with ImageNet mean/std (CLIPS preprocessing), a 2-layer
`LlamaConfig` text model (hidden 32), an `mlp2x_gelu` projector, `vision_feature_layer=-2`, and
a byte-level BPE tokenizer trained here on a built-in text, with `<image>`, a pad token and a
LLaVA-1.5 (vicuna_v1) chat template. Only transformers and tokenizers are imported: the directory
written is plain transformers, which is the point (the project is HF-native: stock Llava, no
custom model code). Same seed, same `text_hidden` => the same weights and tokenizer.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    CLIPImageProcessor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedTokenizerFast,
    ViTConfig,
)

IMAGE_SIZE, PATCH = 32, 8
NUM_PATCHES = (IMAGE_SIZE // PATCH) ** 2  # 16 patch tokens (+1 CLS dropped by "default")
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]

SYSTEM_PROMPT = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

# LLaVA-1.5 `vicuna_v1` (sep " ", sep2 "</s>"):
#   "SYSTEM USER: <image>\nQ ASSISTANT: A</s>USER: Q2 ASSISTANT:"
# Content may be a string or a list of {"type": "image"|"text"} parts; images render first.
CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] if messages[0]['content'] is string "
    "else messages[0]['content'][0]['text'] %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set system = '" + SYSTEM_PROMPT.replace("'", "\\'") + "' %}"
    "{% set loop_messages = messages %}{% endif %}"
    "{{ system + ' ' }}"
    "{% for message in loop_messages %}"
    "{% if message['role'] == 'user' %}{{ 'USER: ' }}{% else %}{{ 'ASSISTANT: ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '</s>' }}{% else %}{{ ' ' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# A few hundred words in the register of the synthetic world, so BPE learns useful merges.
_CORPUS = """
A chat between a curious human and an artificial intelligence assistant. The assistant gives
helpful, detailed, and polite answers to the human's questions. USER: ASSISTANT:
What is in the image? Describe the image in detail. How many objects are there? Is there a
red circle in the image? Answer the question using a single word or phrase. Yes. No.
The image shows a small red circle in the upper left corner and a large blue square in the
lower right corner. A green triangle sits in the middle of a white background. There are
three shapes: a circle, a square and a triangle. The circle is red, the square is blue and
the triangle is green. A yellow star is next to an orange hexagon. The background is gray.
Two purple rectangles are stacked on top of each other. The text in the picture reads hello.
A bar chart with four bars: the tallest bar is blue and the shortest bar is red. The value
of the second bar is seven. The picture contains a black line across the top and a pink dot
near the bottom. One large shape and two small shapes are arranged in a row from left to
right. The shapes do not overlap. The square is to the left of the circle. The triangle is
above the star. The object in the center is larger than the others. A photo of a cat on a
sofa. A dog runs in the park. A man rides a bicycle down the street. A bowl of fruit on a
wooden table. A clock on the wall shows ten o'clock. Please look at the image carefully and
answer the question. Is this a circle or a square? What color is the triangle? Where is the
star? Which shape is the largest? Count the squares. Read the text. Summarize the chart.
numbers one two three four five six seven eight nine ten zero 0 1 2 3 4 5 6 7 8 9
"""


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on the built-in corpus (about 0.1 s) and wrap it for transformers."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
        chat_template=CHAT_TEMPLATE,
        padding_side="left",  # batched generation pads on the left
    )


def build_processor(tokenizer: PreTrainedTokenizerFast) -> LlavaProcessor:
    """The LlavaProcessor of the tiny Llava: CLIPS squash preprocessing at 32 px, patch 8, the chat template."""
    # CLIPS squash recipe: resize straight to the square, no crop, ImageNet stats.
    image_processor = CLIPImageProcessor(
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=False,
        do_resize=True,
        resample=2,  # bilinear
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        do_convert_rgb=True,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )


def build_config(tokenizer: PreTrainedTokenizerFast, text_hidden: int = 32) -> LlavaConfig:
    """The tiny LlavaConfig: ViT tower as above, a 2-layer Llama of width `text_hidden` on `tokenizer`'s vocab."""
    vision = ViTConfig(
        image_size=IMAGE_SIZE, patch_size=PATCH, num_channels=3,
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        hidden_act="gelu", layer_norm_eps=1e-6, qkv_bias=True,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=text_hidden, intermediate_size=2 * text_hidden,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=512, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        projector_hidden_act="gelu",
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=NUM_PATCHES,
    )
    config.pad_token_id = tokenizer.pad_token_id
    return config


def make_tiny_llava(out_dir: str | Path, seed: int = 0, text_hidden: int = 32) -> Path:
    """Write a tiny random Llava + processor to `out_dir` (created) and return its path.

    `text_hidden=64` gives a text model that bitsandbytes' 4-bit CPU kernels accept (they need
    every quantized Linear's input width to be a multiple of the 64-wide quantization block).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    processor = build_processor(tokenizer)
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(build_config(tokenizer, text_hidden)).eval()
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _smoke(path: Path) -> str:
    """Reload with stock Auto* classes and generate from an image + prompt; returns the text."""
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(path)
    model = LlavaForConditionalGeneration.from_pretrained(path).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is in the image?"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(images=Image.new("RGB", (40, 24), "red"), text=prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    return processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/tiny-llava")
    print(f"wrote {make_tiny_llava(target)}; sample: {_smoke(target)!r}")
