"""Text-only lookup probe: can a causal LM answer "Is there a <colour> <shape> in the image?" from a
scene description in its own context?

A LLaVA answers a POPE question by looking the asked object up among the image tokens. This probe
asks the LM the same question with the scene written out in words instead, before any image is
involved. It draws fresh world scenes, writes each as text, asks one existence question (half of
them about a present object, half about an absent one), and scores

    margin = log P(" Yes") - log P(" No")        (each continuation summed token by token)

It prints the accuracy at margin 0 and the AUC (P(margin of a present object > margin of an absent
one); 0.5 = the answer ignores the context), for three ways of writing the scene: the multi-sentence
synthetic caption, the one-line short caption, and the object list of the LM's look-up lines
("The shapes are red star, blue circle.").

    python scripts/lm_lookup_probe.py --model runs/demo/lm
    python scripts/lm_lookup_probe.py --model runs/demo/lm --n 300 --seed 1
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from clips_llava_eval.margins import summarize

from clips_tower.world.captions import short_caption, synthetic_caption
from clips_tower.world.questions import scene_list, short_question
from clips_tower.world.scene import sample_scene

STYLES = {
    "synthetic": lambda scene, rng: synthetic_caption(scene, rng),
    "short": lambda scene, rng: short_caption(scene).capitalize(),
    "list": lambda scene, rng: scene_list(scene),  # the format of the LM's look-up lines (lookup.txt)
}


@torch.no_grad()
def continuation_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """Sum of log P(token) over the tokens that `continuation` adds to `context`."""
    before = tokenizer(context).input_ids
    ids = tokenizer(context + continuation).input_ids
    logp = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
    return float(sum(logp[t - 1, ids[t]] for t in range(len(before), len(ids))))


def lookup_items(n: int, seed: int, style: str) -> list[tuple[str, bool]]:
    """n (context ending in the question, the answer is yes) pairs from fresh scenes."""
    rng = np.random.default_rng(seed)
    items = []
    for _ in range(n):
        scene = sample_scene(rng, 1, 6)
        question, answer, _ = short_question(scene, rng, "existence")
        items.append((STYLES[style](scene, rng) + " " + question, answer == "Yes"))
    return items


def probe(model, tokenizer, n: int = 200, seed: int = 12345) -> dict[str, dict[str, float]]:
    out = {}
    for style in STYLES:
        items = lookup_items(n, seed, style)
        margins = [continuation_logprob(model, tokenizer, c, " Yes") - continuation_logprob(model, tokenizer, c, " No")
                   for c, _ in items]
        out[style] = summarize(margins, [g for _, g in items])
    return out


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a causal-LM dir (`clips-llava lm init` / `lm pretrain`)")
    parser.add_argument("--n", type=int, default=200, help="questions per description style")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the fresh scenes")
    args = parser.parse_args(argv)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    print("| description | n | acc@0 | AUC |\n|---|---|---|---|")
    for style, s in probe(model, tokenizer, args.n, args.seed).items():
        print(f"| {style} | {args.n} | {s['acc@0']:.3f} | {s['AUC']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
