"""Model assembly: a stock `LlavaForConditionalGeneration` from an exported tower + an HF causal LM.

    from llava_train.model import assemble_llava
    assemble_llava("runs/tower", "runs/lm", "runs/llava-init", template="plain")
    # -> a stock HF Llava dir (config, safetensors, processor with chat template); load it with
    #    LlavaForConditionalGeneration.from_pretrained / AutoProcessor.from_pretrained

The tower dir is what `clips-llava tower export` writes (an HF vision model + its image
processor + tower_info.json) or a plain HF vision tower dir. Its `llava` block (feature layer,
strategy, image-token count; `clips_tower.adapter.tower_llava_block`) is the one source of the
LlavaConfig and the processor settings (`llava_train.llava_config`, projector registry there); a dummy
forward of the tower checks it. The tokenizer gains `<image>` (and `<pad>` when it has none), the
embeddings are resized, the projector is `mlp2x_gelu` (HF's `multi_modal_projector.linear_1/linear_2`),
and the processor carries the template's chat template and the image-token count. Training later loads
this directory with `from_pretrained`, so ZeRO-3 partitioned init and 4-bit loading come from
transformers itself. Projector weights move in and out with `llava_train.projector`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from clips_tower.adapter.tower_facts import tower_image_shape, tower_image_size  # noqa: F401  (re-exported)
from clips_tower.io import atomic_dir, check_known
from llava_train.llava_config import build_llava_config, llava_processor_kwargs
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


def check_tower_tokens(tower, llava: dict) -> None:
    """The tower's measured output (one dummy forward) agrees with its `llava` block: the feature layer
    has `image_seq_length` tokens after the strategy, and "default" drops exactly one (CLS)."""
    n, strategy = llava["image_seq_length"], llava["vision_feature_select_strategy"]
    side = tower_image_size(tower.config)
    layer = llava["vision_feature_layer"]
    with torch.no_grad():
        px = torch.zeros(1, 3, side, side, dtype=next(tower.parameters()).dtype)
        states = tower(px, output_hidden_states=True).hidden_states
    for one in (layer if isinstance(layer, list) else [layer]):
        seq = states[one].shape[1]
        if strategy == "default" and seq - n != 1:
            raise ValueError(f"tower emits {seq - n} non-patch tokens; the 'default' feature strategy drops exactly one (CLS)")
        if seq != n + (llava["num_additional_image_tokens"] if strategy == "default" else 0):
            raise ValueError(f"tower emits {seq} tokens at vision_feature_layer {one}; its llava block records "
                             f"image_seq_length {n} and {llava['num_additional_image_tokens']} additional ({strategy})")


def image_seq_length(llava_dir: str | Path) -> int:
    """Image tokens per image of an assembled Llava dir: its config's `image_seq_length`."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(str(llava_dir)).image_seq_length)


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


def build_processor(image_processor, tokenizer, vision_config, llava: dict, template: str,
                    image_aspect_ratio: str = "native"):
    """The LlavaProcessor: the tower's image processor, the template's chat template, and the `<image>`
    expansion of the tower's `llava` block."""
    from transformers import LlavaProcessor

    return LlavaProcessor(
        image_processor=with_aspect_ratio(image_processor, image_aspect_ratio), tokenizer=tokenizer,
        **llava_processor_kwargs(vision_config, llava), chat_template=get_template(template).jinja(tokenizer),
    )


def assemble_llava(vision_tower: str | Path, language_model: str | Path, out: str | Path,
                   template: str = "plain", projector: str = "mlp2x_gelu", seed: int = 0,
                   projector_weights: str | Path | None = None, image_aspect_ratio: str = "native") -> Path:
    """Write a stock Llava dir to `out` (atomically: temp dir + rename); returns `out`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlavaForConditionalGeneration
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    from clips_tower.adapter import load_tower_model, load_tower_processor, tower_llava_block

    tower = load_tower_model(vision_tower)
    image_processor = load_tower_processor(vision_tower)
    lm = AutoModelForCausalLM.from_pretrained(language_model)
    tokenizer = AutoTokenizer.from_pretrained(language_model)
    vcfg = tower.config
    llava = tower_llava_block(vision_tower, vcfg)
    check_tower_tokens(tower, llava)
    add_llava_tokens(tokenizer)
    config = build_llava_config(vcfg, lm.config, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
                                projector=projector, llava=llava)
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
    processor = build_processor(image_processor, tokenizer, vcfg, llava, template, image_aspect_ratio)
    return save_llava(model, processor, out)


def save_llava(model, processor, out: str | Path) -> Path:
    """save_pretrained model + processor into a temp dir beside `out`, then rename into place."""
    out = Path(out)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
    log.info("saved stock Llava to %s", out)
    return out
