"""Model loading and multi-turn chat state for `clips-llava chat` (the REPL lives in chat.py).

    from llava_train.chat.session import load_llava, ChatSession
    model, processor = load_llava("runs/demo/llava", quant="4bit", device="auto")
    session = ChatSession(model, processor, temperature=0.0, max_new_tokens=64)
    session.set_image("cat.png")                     # goes into the first user turn
    for chunk in session.stream("What is in the image?"):
        print(chunk, end="", flush=True)

Loads any stock HF `LlavaForConditionalGeneration` directory (or hub id such as
`llava-hf/llava-1.5-7b-hf`, for users online), or a peft LoRA adapter directory on top of one
(`base=`). 4/8-bit loading goes through bitsandbytes with the vision tower and the
projector kept unquantized (`llm_int8_skip_modules` needs their *full* prefixes: a bare `vision_tower` is
ignored by bitsandbytes and the tower gets quantized).
Prompts are rendered with the processor's own chat template, so the history is formatted the way
the model was trained; the image is attached to the first user turn, as LLaVA-1.5 does.
"""
from __future__ import annotations

import errno
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image
from safetensors import SafetensorError
from transformers import (
    AutoProcessor,
    LlavaForConditionalGeneration,
    StoppingCriteria,
    StoppingCriteriaList,
    TextIteratorStreamer,
)
from transformers.generation.streamers import BaseStreamer

from clips_tower.images import load_rgb
from clips_tower.inputs import PROCESSOR_FILES as IMAGE_PROCESSOR_FILES
from clips_tower.inputs import LLAVA, TOKENIZER_FILES, InputError, check_model_type, check_weights, is_hub_id
from clips_tower.io import check_known, lookup
from llava_train.model import bnb_config

QUANT_BITS = {"4bit": 4, "8bit": 8}  # --quant -> bits; the tower, projector and head stay unquantized
DEVICES = ("auto", "cpu", "cuda")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json")


class ChatInputError(ValueError):
    """Bad user input (model dir, image, device): the message is one line, shown as is."""


HUB_FILES = ["*.json", "*.safetensors", "*.jinja", "*.model", "*.txt"]  # never pickles


def resolve_model_dir(name: str | Path) -> Path:
    """A local directory as is; an `owner/name` that is not one is fetched from (or found in the
    cache of) the Hugging Face Hub, e.g. `llava-hf/llava-1.5-7b-hf`. Offline, only the cache."""
    path = Path(name).expanduser()
    if path.exists() or not is_hub_id(name):
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(snapshot_download(str(name), allow_patterns=HUB_FILES))
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError, ValueError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ChatInputError(f"model directory not found: {name} (not a local directory; Hugging Face Hub: {why})") from None


def _read_config(path: Path) -> dict:
    if not path.is_dir():
        raise ChatInputError(f"model directory not found: {path}")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise ChatInputError(f"{path} is not a model directory (no config.json or adapter_config.json)")
    try:
        config = json.loads(cfg_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ChatInputError(f"cannot read {cfg_file}: {e}") from None
    if not isinstance(config, dict):
        raise ChatInputError(f"cannot read {cfg_file}: expected a JSON object, found {type(config).__name__}")
    return config


def check_llava_dir(path: str | Path) -> Path:
    """Raise ChatInputError unless `path` holds a stock HF Llava model (model_type "llava")."""
    path = Path(path)
    try:
        check_model_type(path, _read_config(path), LLAVA)
    except InputError as e:
        raise ChatInputError(str(e)) from None
    try:  # truncated or corrupt weight files: named here, before transformers' nameless SafetensorError
        check_weights(path, "Llava model")
    except InputError as e:
        raise _cannot_load("a Llava model", path, e) from None
    return path


def _cannot_load(what: str, path: Path, e: Exception) -> ChatInputError:
    text = str(e)
    return ChatInputError(f"cannot load {what}: {text}" if text.startswith(str(path))
                          else f"cannot load {what} from {path}: {text}")


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def resolve_device(device: str) -> str:
    check_known(device, DEVICES, "device", error=ChatInputError)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ChatInputError("--device cuda was asked for but no CUDA device is available")
    return device


def _dtype_for(device: str, quant: str | None) -> torch.dtype:
    if device == "cuda":
        if quant == "8bit":  # LLM.int8() computes in fp16; bf16 inputs would be cast at every matmul
            return torch.float16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # bf16 matmuls are slow or missing on most CPUs


def quantization_config(quant: str | None, dtype: torch.dtype):
    """The bitsandbytes config for `--quant` (None: no quantization)."""
    if quant is None:
        return None
    return bnb_config(lookup(QUANT_BITS, quant, "quantization", error=ChatInputError), dtype)


def load_llava(model_dir: str | Path, base: str | Path | None = None, quant: str | None = None,
               device: str = "auto"):
    """Load (model, processor) from a Llava dir, or from a LoRA adapter dir plus its `base` dir."""
    device = resolve_device(device)
    model_dir = resolve_model_dir(model_dir)
    if is_adapter_dir(model_dir):
        if base is None:
            raise ChatInputError(f"{model_dir} is a LoRA adapter directory: pass its base model with --base DIR")
        weights_dir = check_llava_dir(resolve_model_dir(base))
    else:
        if base is not None:
            raise ChatInputError(f"--base is only for LoRA adapter directories; {model_dir} has no adapter_config.json")
        weights_dir = check_llava_dir(model_dir)
    # An adapter dir saved by our trainer carries the processor; otherwise it is the base's.
    proc_dir = model_dir if any((model_dir / f).is_file() for f in PROCESSOR_FILES) else weights_dir
    if not any((proc_dir / f).is_file() for f in IMAGE_PROCESSOR_FILES):
        raise ChatInputError(f"cannot load a Llava model: {proc_dir} has no image processor "
                             f"({' or '.join(IMAGE_PROCESSOR_FILES)})")
    if not any((proc_dir / f).is_file() for f in TOKENIZER_FILES):
        raise ChatInputError(f"cannot load a Llava model: {proc_dir} has no tokenizer files "
                             f"({', '.join(TOKENIZER_FILES[:3])}, ...)")
    if weights_dir != model_dir:
        try:
            check_weights(model_dir, "LoRA adapter")
        except InputError as e:
            raise _cannot_load("the LoRA adapter", model_dir, e) from None

    dtype = _dtype_for(device, quant)
    try:
        processor = AutoProcessor.from_pretrained(proc_dir)
        model = LlavaForConditionalGeneration.from_pretrained(
            weights_dir, dtype=dtype, device_map={"": device},
            quantization_config=quantization_config(quant, dtype),
        )
        if weights_dir != model_dir:
            from peft import PeftModel  # only adapter users pay for the import

            model = PeftModel.from_pretrained(model, model_dir)
            if quant is None:  # fold LoRA into the weights: plain Llava speed at inference
                model = model.merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        first = first.split(". ")[0]  # HF's hub hints ("If you were trying to load...") do not apply
        raise ChatInputError(f"cannot load a Llava model from {model_dir}: {first}") from None
    if getattr(processor, "image_processor", None) is None or not getattr(processor, "chat_template", None):
        raise ChatInputError(f"{proc_dir} has no Llava processor with a chat template")
    model.eval()
    return model, processor


def load_image(path: str | Path) -> Image.Image:
    """Open an image as RGB, or raise ChatInputError with a one-line reason."""
    path = Path(path).expanduser()
    if not path.is_file():
        if path.is_dir():
            raise ChatInputError(f"cannot read image {path}: it is a directory, not an image file")
        if path.is_symlink():
            try:
                path.resolve(strict=True)
            except RuntimeError:  # Python < 3.13 reports a symlink loop as RuntimeError
                raise ChatInputError(f"cannot read image {path}: symlink loop") from None
            except OSError as e:
                why = "symlink loop" if e.errno == errno.ELOOP else "broken symlink"
                raise ChatInputError(f"cannot read image {path}: {why}") from None
        raise ChatInputError(f"image not found: {path}")
    try:
        return load_rgb(path)  # full, strict decode: truncated files fail here
    except Image.DecompressionBombError as e:
        raise ChatInputError(f"cannot read image {path}: too large to decode safely ({str(e).split(', could')[0]})") from None
    except Exception as e:  # any decoder error (PIL raises OSError, ValueError, SyntaxError, ...): unusable image
        raise ChatInputError(f"cannot read image {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


class _StopOnEvent(StoppingCriteria):
    """Lets the REPL stop a generation running in another thread (Ctrl-C mid-answer)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class ChatSession:
    """One conversation: an optional image, the message history, and generation settings."""

    def __init__(self, model, processor, temperature: float = 0.2, max_new_tokens: int = 512,
                 top_p: float | None = None, system: str | None = None):
        self.model, self.processor = model, processor
        self.temperature, self.max_new_tokens, self.top_p = temperature, max_new_tokens, top_p
        self.system = system
        self.image: Image.Image | None = None
        self.messages: list[dict] = []
        self.stop_event = threading.Event()

    # --- state ---------------------------------------------------------------------------------
    def set_image(self, path: str | Path) -> None:
        """Switch to a new image; the history starts over (the image lives in the first turn)."""
        self.image = load_image(path)  # raises before touching the state on bad input
        self.reset()

    def reset(self) -> None:
        self.messages = []

    # --- generation ----------------------------------------------------------------------------
    def _inputs(self, text: str):
        turn: list[dict] = []
        if self.image is not None and not self.messages:
            turn.append({"type": "image"})
        turn.append({"type": "text", "text": text})
        messages = self.messages + [{"role": "user", "content": turn}]
        if self.system:
            messages = [{"role": "system", "content": [{"type": "text", "text": self.system}]}] + messages
        prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        has_image = self.image is not None and any(
            p["type"] == "image" for m in messages for p in m["content"])
        inputs = self.processor(images=[self.image] if has_image else None, text=prompt, return_tensors="pt")
        device = self.model.device
        return messages, {k: v.to(device) for k, v in inputs.items()}

    def generation_kwargs(self) -> dict:
        kw: dict = {"max_new_tokens": self.max_new_tokens,
                    "stopping_criteria": StoppingCriteriaList([_StopOnEvent(self.stop_event)])}
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature)
            if self.top_p is not None:
                kw["top_p"] = self.top_p
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        tok = self.processor.tokenizer
        kw["pad_token_id"] = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return kw

    def generate(self, text: str, streamer: BaseStreamer | None = None) -> str:
        """Answer `text` (blocking), feeding tokens to `streamer`; the turn joins the history."""
        messages, inputs = self._inputs(text)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self.generation_kwargs(), streamer=streamer)
        answer = self.processor.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
        self.messages = messages[1:] if self.system else messages
        self.messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        return answer

    def stream(self, text: str) -> Iterator[str]:
        """Yield the answer's text as it is generated (generation runs in a worker thread).

        Closing the iterator early (or Ctrl-C while iterating) stops the generation cleanly.
        """
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        error: list[BaseException] = []

        def work():
            try:
                self.generate(text, streamer=streamer)
            except BaseException as e:  # re-raised in the caller's thread below
                error.append(e)
                streamer.end()  # unblock the consumer

        self.stop_event.clear()
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            yield from streamer
        finally:
            self.stop_event.set()  # no-op when generation already finished
            thread.join()
            self.stop_event.clear()
        if error:
            raise error[0]
