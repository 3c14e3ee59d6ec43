"""`clips_llava_hf`: lmms-eval's stock `llava_hf` (simple) model with batched generation and a working
log-likelihood, registered through lmms-eval's `lmms_eval.models` entry point (pyproject.toml).

It loads any stock HF `LlavaForConditionalGeneration` directory; nothing here is specific to this
project's models. Use it instead of `llava_hf` when you want `--batch_size > 1` or a
loglikelihood / multiple-choice task:

    python -m lmms_eval --model clips_llava_hf --model_args pretrained=DIR --batch_size 8 \
        --tasks synth_pope --include_path runs/eval-data

Differences from lmms-eval 0.7.3's `llava_hf` (lmms_eval/models/simple/llava_hf.py), each minimal:
  * `generate_until` batches (left padding, prompts sorted by length), honours `until`, and shows
    a progress bar; stock asserts `batch_size == 1` and ignores `until`.
  * `loglikelihood` tokenises the context *with* its images. Stock calls the processor on text
    that holds `<image>` but no image, which transformers 5 rejects ("Found 1 <image> tokens in the
    text but no images were passed").
  * `loglikelihood` returns each (loss, is_greedy) pair wrapped in a `GenerationResult`: the
    0.7.3 evaluator passes every output through `unwrap_generation_output`, which turns a bare
    tuple into its `str()`, and multiple-choice scoring then fails with "too many values to unpack".
  * the device defaults to CUDA when available, else CPU (stock: always "cuda").
"""
from __future__ import annotations

import torch
from lmms_eval import utils
from lmms_eval.api.instance import GenerationResult
from lmms_eval.models.simple.llava_hf import DEFAULT_IMAGE_TOKEN, VICUNA_CHAT_TEMPLATE, LlavaHf
from tqdm import tqdm

class ClipsLlavaHf(LlavaHf):
    is_simple = True

    def __init__(self, pretrained: str, device: str | None = None, device_map: str | None = None, **kwargs) -> None:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(pretrained=pretrained, device=device, device_map=device_map or device, **kwargs)
        self.model.eval()

    # -- prompts ---------------------------------------------------------------------------------
    def _chat_prompt(self, context: str, n_images: int) -> str:
        """The user turn (images first, as LLaVA-1.5 does) rendered with the model's chat template."""
        if n_images and DEFAULT_IMAGE_TOKEN not in context:
            context = " ".join([DEFAULT_IMAGE_TOKEN] * n_images) + "\n" + context
        template = self.chat_template or self.tokenizer.chat_template or VICUNA_CHAT_TEMPLATE
        messages = [{"role": "user", "content": context}]
        return self.tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)

    def _encode(self, texts: list[str], images: list) -> dict:
        inputs = self._image_processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        return inputs.to(self._device, self.model.dtype)

    # -- generation ------------------------------------------------------------------------------
    def generate_until(self, requests) -> list[str]:
        # Longest prompt first: the first batch shows the peak memory; equal gen_kwargs share a batch.
        collator = utils.Collator([r.args for r in requests], lambda a: (-len(self.tok_encode(a[0])), a[0]), grouping=True)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eot_token_id
        results = []
        pbar = tqdm(total=len(requests), disable=self.rank != 0, desc="Model Responding")
        for chunk in collator.get_batched(n=self.batch_size, batch_fn=None):
            contexts, all_gen_kwargs, doc_to_visuals, doc_ids, tasks, splits = zip(*chunk)
            texts, images = [], []
            for ctx, to_visual, doc_id, task, split in zip(contexts, doc_to_visuals, doc_ids, tasks, splits):
                visuals = list(to_visual(self.task_dict[task][split][doc_id]) or [])
                texts.append(self._chat_prompt(ctx, len(visuals)))
                images += visuals
            gen = dict(all_gen_kwargs[0])
            until = gen.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            temperature = float(gen.get("temperature", 0) or 0)
            inputs = self._encode(texts, images)
            with torch.inference_mode():
                out = self.model.generate(
                    **inputs,
                    do_sample=temperature > 0,
                    temperature=temperature if temperature > 0 else None,
                    top_p=gen.get("top_p") if temperature > 0 else None,
                    num_beams=int(gen.get("num_beams", 1) or 1),
                    max_new_tokens=int(gen.get("max_new_tokens", 1024)),
                    use_cache=self.use_cache,
                    pad_token_id=pad_id,
                    eos_token_id=self.eot_token_id,
                )
            new_tokens = out[:, inputs["input_ids"].shape[1]:]  # (B, T_new); prompts are left-padded
            for ctx, text in zip(contexts, self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                for stop in until:
                    text = text.split(stop)[0] if stop else text
                results.append(text)
                self.cache_hook.add_partial("generate_until", (ctx, all_gen_kwargs[0]), text)
            pbar.update(len(chunk))
        pbar.close()
        return collator.get_original(results)

    # -- log-likelihood (multiple-choice tasks) --------------------------------------------------
    def loglikelihood(self, requests) -> list[GenerationResult]:
        results = []
        pbar = tqdm(total=len(requests), disable=self.rank != 0, desc="Model Responding")
        for context, target, to_visual, doc_id, task, split in [r.args for r in requests]:
            doc = self.task_dict[task][split][doc_id]
            continuation = target if isinstance(target, str) else target(doc)
            visuals = list(to_visual(doc) or [])
            prompt = self._chat_prompt(context, len(visuals))
            n_ctx = self._encode([prompt], visuals)["input_ids"].shape[1]  # image tokens expanded
            inputs = self._encode([prompt + continuation], visuals)
            labels = inputs["input_ids"].clone()
            labels[:, :n_ctx] = -100
            with torch.inference_mode():
                out = self.model(**inputs, labels=labels)
            greedy = out.logits[:, n_ctx - 1 : -1].argmax(-1)  # logits at t predict token t+1
            is_greedy = bool((greedy == inputs["input_ids"][:, n_ctx:]).all())
            # Mean NLL of the continuation, as stock llava_hf returns (lmms-eval takes the argmin).
            results.append(GenerationResult(text=(float(out.loss), is_greedy)))
            pbar.update(1)
        pbar.close()
        return results
