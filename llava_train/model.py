"""Model assembly: a stock `LlavaForConditionalGeneration` from an exported tower + an HF causal LM.

    from llava_train.model import assemble_llava
    assemble_llava("runs/tower", "runs/lm", "runs/llava-init", template="plain")
    # -> a stock HF Llava dir (config, safetensors, processor with chat template); load it with
    #    LlavaForConditionalGeneration.from_pretrained / AutoProcessor.from_pretrained

The tower dir is what `clips-llava tower export` writes (an HF vision model + its image
processor); the LlavaConfig comes from the adapter's `build_llava_config` (projector registry there). The tokenizer gains `<image>` (and `<pad>` when it has none), the embeddings are
resized, the projector is `mlp2x_gelu` (HF's `multi_modal_projector.linear_1/linear_2`), and the
processor carries the template's chat template and the image-token count. Training later loads
this directory with `from_pretrained`, so ZeRO-3 partitioned init and 4-bit loading come from
transformers itself. Projector weights move in and out with `llava_train.projector`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from clips_tower.io import atomic_dir, check_known
from llava_train.templates import IMAGE, get_template

log = logging.getLogger(__name__)

# Full module prefixes of `LlavaForConditionalGeneration` that stay in full precision under 4/8-bit
# loading: the tower, the projector (both small and accuracy-sensitive) and the output head
# (bitsandbytes' default). Full prefixes: a bare "vision_tower" is ignored and the tower gets
# quantized (measured, bitsandbytes 0.50).
UNQUANTIZED_MODULES = ("model.vision_tower", "model.multi_modal_projector", "lm_head")


def bnb_config(bits: int, compute_dtype: torch.dtype):
    """The bitsandbytes config to load a Llava in `bits`: 4 = NF4 with double quantization computing
    in `compute_dtype` (QLoRA's), 8 = LLM.int8(); `UNQUANTIZED_MODULES` stay in full precision."""
    from transformers import BitsAndBytesConfig

    skip = list(UNQUANTIZED_MODULES)
    if bits == 4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype,
                                  bnb_4bit_use_double_quant=True, llm_int8_skip_modules=skip)
    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    raise ValueError(f"bitsandbytes loads 4 or 8 bits, not {bits!r}")


def add_llava_tokens(tokenizer) -> int:
    """Add `<image>` (and `<pad>` if missing) as special tokens; returns how many were added."""
    added = 0
    if tokenizer.pad_token is None:
        added += tokenizer.add_special_tokens({"pad_token": "<pad>"})
    if IMAGE not in tokenizer.get_vocab():
        added += tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE]})
    tokenizer.image_token = IMAGE  # saved as extra_special_tokens; LlavaProcessor reads it
    return added


def num_tower_tokens(tower, image_size: int, patch_size: int) -> tuple[int, int]:
    """(patch tokens, extra tokens such as CLS) measured with one dummy forward of the tower."""
    with torch.no_grad():
        px = torch.zeros(1, 3, image_size, image_size, dtype=next(tower.parameters()).dtype)
        seq = tower(px, output_hidden_states=True).hidden_states[-2].shape[1]
    patches = (image_size // patch_size) ** 2
    return patches, seq - patches


def tower_image_size(vision_config) -> int:
    """The tower's square input side: `image_size` is an int or an (H, W) pair in HF vision configs."""
    size = vision_config.image_size
    return size if isinstance(size, int) else size[0]


def tower_image_shape(vision_config) -> tuple[int, int, int]:
    """(channels, side, side) of one preprocessed image for this tower."""
    side = tower_image_size(vision_config)
    return vision_config.num_channels, side, side


IMAGE_ASPECT_RATIOS = ("native", "pad")
_IMAGE_FIELDS = ("do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
                 "do_normalize", "image_mean", "image_std", "do_convert_rgb")


def with_aspect_ratio(image_processor, mode: str):
    """The image processor for LLaVA's `image_aspect_ratio`: `native` = the tower's own preprocessing;
    `pad` = LLaVA-1.5's expand-to-square filled with `tuple(int(x * 255) for x in image_mean)`, then the
    tower's preprocessing. `pad` is transformers' own `LlavaImageProcessor(do_pad=True)` (same backend,
    PIL or torchvision, as the tower's processor), so a saved model reloads in stock `AutoProcessor`
    and lmms-eval's `llava_hf` and our chat pad exactly as training did."""
    check_known(mode, IMAGE_ASPECT_RATIOS, "image_aspect_ratio")
    padded = bool(getattr(image_processor, "do_pad", False)) and "Llava" in type(image_processor).__name__
    if (mode == "pad") == padded:
        return image_processor
    if mode == "native":
        log.warning("image_aspect_ratio native: turning off the pad-to-square of the loaded processor")
        image_processor.do_pad = False
        return image_processor
    from transformers import LlavaImageProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    cls = LlavaImageProcessorPil if type(image_processor).__name__.endswith("Pil") else LlavaImageProcessor
    fields = {k: getattr(image_processor, k) for k in _IMAGE_FIELDS if getattr(image_processor, k, None) is not None}
    return cls(**fields, do_pad=True)


def build_processor(image_processor, tokenizer, vision_config, extra_tokens: int, template: str,
                    image_aspect_ratio: str = "native"):
    from transformers import LlavaProcessor

    return LlavaProcessor(
        image_processor=with_aspect_ratio(image_processor, image_aspect_ratio), tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy="default", num_additional_image_tokens=extra_tokens,
        chat_template=get_template(template).jinja(tokenizer),
    )


def assemble_llava(vision_tower: str | Path, language_model: str | Path, out: str | Path,
                   template: str = "plain", projector: str = "mlp2x_gelu", seed: int = 0,
                   projector_weights: str | Path | None = None, image_aspect_ratio: str = "native") -> Path:
    """Write a stock Llava dir to `out` (atomically: temp dir + rename); returns `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaForConditionalGeneration
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    from clips_tower.adapter import build_llava_config, load_tower_model, load_tower_processor

    tower = load_tower_model(vision_tower)
    image_processor = load_tower_processor(vision_tower)
    lm = AutoModelForCausalLM.from_pretrained(language_model)
    tokenizer = AutoTokenizer.from_pretrained(language_model)
    vcfg = tower.config
    patches, extra = num_tower_tokens(tower, tower_image_size(vcfg), vcfg.patch_size)
    if extra != 1:
        raise ValueError(f"tower emits {extra} non-patch tokens; the 'default' feature strategy drops exactly one (CLS)")
    add_llava_tokens(tokenizer)
    config = build_llava_config(vcfg, lm.config, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
                                projector=projector)
    # Skeleton on the meta device, then the real tower / LM modules and a fresh projector.
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.vision_tower = tower.to(lm.dtype)
    model.model.language_model = lm.model
    model.lm_head = lm.lm_head
    torch.manual_seed(seed)
    model.model.multi_modal_projector = LlavaMultiModalProjector(config).to(lm.dtype)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    model.config.pad_token_id = model.config.text_config.pad_token_id = tokenizer.pad_token_id
    left = [n for n, p in model.named_parameters() if p.is_meta]
    if left:
        raise RuntimeError(f"assembly left parameters uninitialised: {left[:5]}")
    if projector_weights is not None:
        from llava_train.projector import load_projector

        load_projector(model, projector_weights)
    gen = model.generation_config
    gen.bos_token_id, gen.eos_token_id, gen.pad_token_id = (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    processor = build_processor(image_processor, tokenizer, vcfg, extra, template, image_aspect_ratio)
    return save_llava(model, processor, out)


def save_llava(model, processor, out: str | Path) -> Path:
    """save_pretrained model + processor into a temp dir beside `out`, then rename into place."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    log.info("saved stock Llava to %s", out)
    return out
