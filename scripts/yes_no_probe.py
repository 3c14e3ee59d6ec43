"""Teacher-forced yes/no probe: does a LLaVA's yes/no answer depend on the image (and on the question)?

For every question of a world's POPE or MME split, it scores the answer continuations after the
chat prompt lmms-eval sends (the question, then LLaVA-1.5's "\\nAnswer the question using a single
word or phrase."):

    margin = logsumexp(log P(" yes"), log P(" Yes")) - logsumexp(log P(" no"), log P(" No"))

each log P the sum of the continuation's token log-probabilities. It prints, with each question's
own image and with another question's image (a fixed shuffle):

  acc@0      accuracy of answering "yes" when margin > 0 (what greedy decoding roughly does)
  yes-ratio  share of margins > 0
  AUC        P(margin of a "yes" question > margin of a "no" question): threshold-free, so it shows
             a signal that a yes- or no-bias hides. 0.5 means the answer ignores image and question.

    python scripts/yes_no_probe.py --model runs/demo/llava/clips/stage2 --world runs/demo/world
    python scripts/yes_no_probe.py --model DIR --world WORLD --tasks pope --limit 300
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch
from clips_llava_eval.margins import summarize
from PIL import Image

from clips_tower.world.conversations import SHORT
from clips_tower.world.questions import MME_SUFFIX

CONTINUATIONS = {"yes": (" yes", " Yes"), "no": (" no", " No")}


def prompt(tokenizer, question: str) -> str:
    """The chat prompt lmms-eval sends: the question, then LLaVA-1.5's SHORT prompt (which its MME task
    puts in place of MME's own MME_SUFFIX)."""
    user = "<image>\n" + question.replace(MME_SUFFIX, "") + SHORT
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True)


@torch.no_grad()
def continuation_logprob(model, processor, prompts: list[str], images: list, continuation: str) -> torch.Tensor:
    """Sum of log P(token) over the tokens that `continuation` adds to each prompt (right padding)."""
    tok = processor.tokenizer
    side, tok.padding_side = tok.padding_side, "right"
    try:
        full = [p + continuation for p in prompts]
        inputs = processor(text=full, images=images, return_tensors="pt", padding=True)
    finally:
        tok.padding_side = side
    added = [len(tok(f, add_special_tokens=False).input_ids) - len(tok(p, add_special_tokens=False).input_ids)
             for f, p in zip(full, prompts)]
    logp = model(**inputs).logits.float().log_softmax(-1)
    ids, lengths = inputs["input_ids"], inputs["attention_mask"].sum(-1)
    out = []
    for b, n in enumerate(added):
        positions = torch.arange(int(lengths[b]) - n, int(lengths[b]))
        out.append(logp[b, positions - 1, ids[b, positions]].sum())
    return torch.stack(out)


def margins(model, processor, records: list[dict], image_paths: list[Path], batch_size: int = 32) -> list[float]:
    out: list[float] = []
    for k in range(0, len(records), batch_size):
        batch = records[k:k + batch_size]
        prompts = [prompt(processor.tokenizer, r["question"]) for r in batch]
        images = [Image.open(p).convert("RGB") for p in image_paths[k:k + batch_size]]
        score = {a: torch.logsumexp(torch.stack([continuation_logprob(model, processor, prompts, images, c)
                                                 for c in conts]), 0) for a, conts in CONTINUATIONS.items()}
        out += (score["yes"] - score["no"]).tolist()
    return out


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="a stock HF Llava dir (stage 2 output)")
    parser.add_argument("--world", required=True, type=Path, help="the world dir whose eval/<task>.jsonl to score")
    parser.add_argument("--tasks", default="pope,mme", help="comma-separated: pope, mme")
    parser.add_argument("--limit", type=int, default=None, help="first N questions of each task")
    parser.add_argument("--seed", type=int, default=0, help="seed of the image shuffle")
    args = parser.parse_args(argv)
    processor = AutoProcessor.from_pretrained(args.model)
    model = LlavaForConditionalGeneration.from_pretrained(args.model).eval()
    print("| task | images | n | acc@0 | yes-ratio | AUC |\n|---|---|---|---|---|---|")
    for task in args.tasks.split(","):
        lines = (args.world / "eval" / f"{task}.jsonl").read_text().splitlines()
        records = [json.loads(line) for line in lines if line][: args.limit]
        gold = [r["answer"].lower() == "yes" for r in records]
        own = [args.world / "eval" / r["image"] for r in records]
        shuffled = own[:]
        random.Random(args.seed).shuffle(shuffled)
        for name, paths in (("own", own), ("shuffled", shuffled)):
            s = summarize(margins(model, processor, records, paths), gold)
            print(f"| {task} | {name} | {len(records)} | {s['acc@0']:.3f} | {s['yes-ratio']:.2f} | {s['AUC']:.3f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
