"""Where does yes/no lookup over image tokens get stuck: the image tokens, or the LM?

A LLaVA answers "Is there a red shape in the image?" by finding the image token that carries red.
On the demo world this is learned very slowly (the README's eighth and ninth rounds). This script
trains one such lookup in a plain PyTorch loop, starting from a stage-1 Llava dir. What sits at the
image positions is the variable:

  proj    the stage-1 projector over the frozen tower's features: what stage 2 sees.
  oracle  a fresh MLP over a clean one-hot code of each grid cell (colour, shape, size, empty).
          The content is exact, but unlike any word.
  words   the sum of the LM's own input embeddings of the cell's colour and shape words (" nothing"
          for an empty cell). The content is exact and word-like: what a text scene description gives.

The projector (or MLP) and the whole LM train; the tower is frozen. The loss is the cross-entropy of
the first answer token where " Yes" and " No" differ (chance 0.693). Questions ask about one colour
(`--question object`: one object, POPE's form), present or absent with equal chance, on the world's
stage-1 scenes: the first `--train` scenes train, the next `--heldout` ones are scored. `--turns N`
asks N questions per training conversation, `--lm DIR` swaps in another LM's weights (for example one
pretrained on lookup text, or the untrained `lm init` one). It prints the mean loss per 100 steps, and the held-out AUC of the
margin logit(Yes) - logit(No), with each scene's own image tokens and with another scene's.

If `oracle` and `words` learn fast and `proj` does not, the image-token representation holds the
lookup back. If `words` learns fast and `oracle` does not, the LM looks tokens up by matching word
embeddings only. If none learns fast, the LM is the limit (README "Tenth round": it is, at the demo's stage-2 rate).

    python scripts/lookup_diag.py --model runs/demo/llava/clips/stage1 --mode words
    python scripts/lookup_diag.py --model runs/demo/llava/clips/stage1 --mode proj --steps 900 --lr 1e-3
    python scripts/lookup_diag.py --model runs/demo/llava/clips/stage1 --mode words --lm runs/demo/lm-init --lr 1e-4
    python scripts/lookup_diag.py --model runs/demo/llava/clips/stage1 --mode proj --question object \
        --lr 1e-4 --proj-lr 1e-3 --save runs/diag && \
      python scripts/yes_no_probe.py --model runs/diag --world runs/demo/world --tasks pope --limit 300
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch
from clips_llava_eval.margins import summarize

from clips_tower.world import generate
from clips_tower.world.captions import pick
from clips_tower.world.conversations import SHORT
from clips_tower.world.presets import get_preset
from clips_tower.world.questions import pope_negative
from clips_tower.world.scene import COLORS, SHAPES, SIZES, render_scene
from llava_train.templates import IMAGE, get_template

MODES = ("proj", "oracle", "words")
CELLS = 9


def cell_codes(scene) -> torch.Tensor:
    """(9, 10 + 6 + 2 + 1) one-hot code per grid cell, row-major: colour, shape, size, or empty."""
    colors, shapes = list(COLORS), list(SHAPES)
    code = torch.zeros(CELLS, len(colors) + len(shapes) + len(SIZES) + 1)
    code[:, -1] = 1.0
    for o in scene.objects:
        c = o.row * 3 + o.col
        code[c, -1] = 0.0
        code[c, colors.index(o.color)] = 1.0
        code[c, len(colors) + shapes.index(o.shape)] = 1.0
        code[c, len(colors) + len(shapes) + SIZES.index(o.size)] = 1.0
    return code


def cell_word_ids(scene, tokenizer) -> list[list[int]]:
    """Per cell, the token ids of " <colour> <shape>" or " nothing"."""
    words = [" nothing"] * CELLS
    for o in scene.objects:
        words[o.row * 3 + o.col] = f" {o.color} {o.shape}"
    return [tokenizer(w, add_special_tokens=False).input_ids for w in words]


def questions(scenes, seed: int | np.random.Generator, kind: str = "color") -> list[tuple[str, bool]]:
    """One question per scene, the answer yes or no with equal chance.

    color: "Is there a red shape in the image?" (absent colours drawn uniformly);
    object: POPE's "Is there a red circle in the image?", the absent object drawn the POPE way, half
    random and half adversarial (a present shape in another colour).
    """
    rng = np.random.default_rng(seed)
    out = []
    for scene in scenes:
        if kind == "object":
            yes = bool(rng.random() < 0.5)
            shapes = {o.shape for o in scene.objects}
            adversarial = len(shapes) * len(COLORS) > len(scene.names) and rng.random() < 0.5  # one exists
            name = pick(rng, sorted(scene.names)) if yes else pope_negative(
                scene, rng, "adversarial" if adversarial else "random", [])
            out.append((f"Is there a {name} in the image?", yes))
            continue
        present = sorted({o.color for o in scene.objects})
        absent = [c for c in COLORS if c not in present]
        yes = bool(rng.random() < 0.5) or not absent
        color = pick(rng, present) if yes else pick(rng, absent)
        out.append((f"Is there a {color} shape in the image?", yes))
    return out


class Diag:
    def __init__(self, model, processor, mode: str, scenes, image_size: int):
        self.model, self.mode = model, mode
        tok = processor.tokenizer
        # a stage-1 dir carries the `plain` template; the questions are asked as stage 2 asks them
        tok.chat_template = processor.chat_template = get_template("vicuna_v1").jinja(tok)  # --save keeps it
        self.tok = tok
        self.image_id = processor.image_token_id
        # the answer is scored at its first token where " Yes" and " No" differ (the shared prefix,
        # if the tokenizer has one, is part of the prompt)
        yes, no = (tok(a, add_special_tokens=False).input_ids for a in (" Yes", " No"))
        k = 0
        while k < min(len(yes), len(no)) and yes[k] == no[k]:
            k += 1
        if k == min(len(yes), len(no)):
            raise ValueError("' Yes' and ' No' tokenize as prefixes of each other; no first differing token")
        self.shared, self.yes, self.no = yes[:k], yes[k], no[k]
        self.embed = model.get_input_embeddings()
        width = self.embed.weight.shape[1]
        self.extra = torch.nn.ModuleList()
        if mode == "proj":
            feats = []  # the projector's input (the tower's selected layer), captured once per image
            hook = model.model.multi_modal_projector.register_forward_hook(lambda m, a, o: feats.append(a[0].detach()))
            with torch.no_grad():
                for k in range(0, len(scenes), 64):
                    images = [render_scene(s, image_size) for s in scenes[k:k + 64]]
                    pv = processor.image_processor(images, return_tensors="pt")["pixel_values"]
                    model.model.get_image_features(pixel_values=pv)
            hook.remove()
            self.features = torch.cat(feats)  # (n, tokens, tower width)
        elif mode == "oracle":
            self.features = torch.stack([cell_codes(s) for s in scenes])
            self.extra.append(torch.nn.Sequential(torch.nn.Linear(self.features.shape[-1], width), torch.nn.GELU(),
                                                  torch.nn.Linear(width, width)))
        else:
            self.word_ids = [cell_word_ids(s, tok) for s in scenes]
        self.n_image = int(self.features.shape[1]) if mode != "words" else CELLS

    def lm_parameters(self):
        return [*self.model.model.language_model.parameters(), *self.model.lm_head.parameters()]

    def image_parameters(self):
        """What maps the image content to the image positions: the projector, or the oracle's MLP."""
        return [*self.extra.parameters()] + (
            [*self.model.model.multi_modal_projector.parameters()] if self.mode == "proj" else [])

    def parameters(self):
        return self.lm_parameters() + self.image_parameters()

    def image_tokens(self, idx: int) -> torch.Tensor:
        if self.mode == "proj":
            return self.model.model.multi_modal_projector(self.features[idx])
        if self.mode == "oracle":
            return self.extra[0](self.features[idx])
        return torch.stack([self.embed(torch.tensor(ids)).sum(0) for ids in self.word_ids[idx]])

    def tokens(self, text: str) -> list[int]:
        """`text`'s ids with each `<image>` expanded to the image positions, as LlavaProcessor does."""
        ids = []
        for t in self.tok(text, add_special_tokens=False).input_ids:
            ids += [t] * self.n_image if t == self.image_id else [t]
        return ids

    def prompt_ids(self, question: str) -> list[int]:
        """The chat prompt of one question about the image, up to its answer's first differing token."""
        text = self.tok.apply_chat_template([{"role": "user", "content": IMAGE + "\n" + question + SHORT}],
                                            tokenize=False, add_generation_prompt=True)
        return self.tokens(text) + self.shared

    def answer_logits(self, ids: list[list[int]], images: list[int], positions: list[list[int]]) -> torch.Tensor:
        """LM logits (sum of len(positions[b]), vocab) at `positions` of each right-padded row `ids[b]`,
        its image positions holding `image_tokens(images[b])`."""
        length = max(map(len, ids))
        input_ids = torch.tensor([x + [self.tok.pad_token_id] * (length - len(x)) for x in ids])
        mask = torch.tensor([[1] * len(x) + [0] * (length - len(x)) for x in ids])
        embeds = self.embed(input_ids)
        rows = []
        for b, img in enumerate(images):
            where = (input_ids[b] == self.image_id).nonzero().squeeze(-1)
            rows.append(embeds[b].index_put((where,), self.image_tokens(img).to(embeds.dtype)))
        hidden = self.model.model.language_model(inputs_embeds=torch.stack(rows), attention_mask=mask).last_hidden_state
        rows_, cols = zip(*[(b, p) for b, ps in enumerate(positions) for p in ps])
        return self.model.lm_head(hidden[torch.tensor(rows_), torch.tensor(cols)])

    def logits(self, batch: list[tuple[int, int, str]]) -> torch.Tensor:
        """Answer-position logits (B, vocab) for (question scene, image scene, question) triples."""
        ids = [self.prompt_ids(q) for _, _, q in batch]
        return self.answer_logits(ids, [img for _, img, _ in batch], [[len(x) - 1] for x in ids])

    def conversation_ids(self, qas: list[tuple[str, bool]]) -> tuple[list[int], list[int], list[int]]:
        """(ids, answer positions, answer targets) of a multi-turn conversation, the image in the first
        turn, each answer teacher-forced: mix665k's VQA samples bundle many questions per image."""
        ids, where, target = [], [], []
        messages: list[dict] = []
        before = ""
        for k, (q, yes) in enumerate(qas):
            messages.append({"role": "user", "content": (IMAGE + "\n" if k == 0 else "") + q + SHORT})
            text = self.tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids += self.tokens(text[len(before):]) + self.shared
            where.append(len(ids) - 1)
            target.append(self.yes if yes else self.no)
            ids += [target[-1], self.tok.eos_token_id]
            messages.append({"role": "assistant", "content": "Yes" if yes else "No"})
            before = self.tok.apply_chat_template(messages, tokenize=False)
        return ids, where, target

    def turns_loss(self, batch: list[tuple[int, list[tuple[str, bool]]]]) -> torch.Tensor:
        """Mean first-answer-token loss over every turn of each (scene, questions) conversation."""
        ids, where, target = zip(*[self.conversation_ids(qas) for _, qas in batch])
        logits = self.answer_logits(list(ids), [img for img, _ in batch], list(where))
        return torch.nn.functional.cross_entropy(logits, torch.tensor([t for ts in target for t in ts]))

    def loss(self, batch, gold: list[bool]) -> torch.Tensor:
        target = torch.tensor([self.yes if g else self.no for g in gold])
        return torch.nn.functional.cross_entropy(self.logits(batch), target)

    @torch.no_grad()
    def heldout(self, items, images: list[int]) -> dict[str, float]:
        margins = []
        for k in range(0, len(items), 32):
            chunk = [(i, img, q) for (i, q, _), img in zip(items[k:k + 32], images[k:k + 32])]
            lg = self.logits(chunk).float()
            margins += (lg[:, self.yes] - lg[:, self.no]).tolist()
        return summarize(margins, [g for _, _, g in items])


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a stock HF Llava dir (a stage-1 output)")
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--world-preset", default="demo", help="the world preset the stage-1 scenes come from")
    parser.add_argument("--world-seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=1200)
    parser.add_argument("--heldout", type=int, default=300)
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--proj-lr", type=float, default=None,
                        help="learning rate of the projector / oracle MLP (default: --lr); --lr 0 freezes the LM")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lm", default=None,
                        help="replace the Llava's LM by this causal-LM dir's weights (e.g. the untrained `lm init` one)")
    parser.add_argument("--question", choices=("color", "object"), default="color",
                        help="color: 'Is there a red shape ...?'; object: POPE's 'Is there a red circle ...?'")
    parser.add_argument("--turns", type=int, default=1,
                        help="questions per training conversation (fresh ones each use; held-out scoring stays one question)")
    parser.add_argument("--fresh", action="store_true",
                        help="draw a new question for each training use of a scene (default: one fixed question each)")
    parser.add_argument("--save", default=None,
                        help="save the trained Llava (vicuna_v1 template) here, e.g. for scripts/yes_no_probe.py")
    args = parser.parse_args(argv)
    if args.save and args.mode != "proj":
        raise SystemExit("--save needs --mode proj: other modes put no projector output at the image positions")
    torch.manual_seed(args.seed)
    preset = get_preset(args.world_preset)
    scenes = generate._draw(preset, args.world_seed).llava["scene"][: args.train + args.heldout]
    if len(scenes) < args.train + args.heldout:
        raise SystemExit(f"the preset has {len(scenes)} stage-1 scenes, fewer than --train + --heldout")
    processor = AutoProcessor.from_pretrained(args.model)
    model = LlavaForConditionalGeneration.from_pretrained(args.model)
    if args.lm:
        from transformers import AutoModelForCausalLM

        lm = AutoModelForCausalLM.from_pretrained(args.lm)
        lm.resize_token_embeddings(model.get_input_embeddings().weight.shape[0])
        model.model.language_model.load_state_dict(lm.model.state_dict())
        model.lm_head.load_state_dict(lm.lm_head.state_dict())
    model.train()
    diag = Diag(model, processor, args.mode, scenes, preset.image_size)
    train = [(i, q, g) for i, (q, g) in enumerate(questions(scenes[: args.train], args.seed, args.question))]
    held = [(args.train + i, q, g) for i, (q, g) in enumerate(questions(scenes[args.train:], args.seed + 1, args.question))]
    rng = np.random.default_rng(args.seed)
    shuffled = [int(x) for x in args.train + rng.permutation(args.heldout)]
    proj_lr = args.lr if args.proj_lr is None else args.proj_lr
    if args.lr == 0:  # a frozen LM: no gradients through its weights (nor in the clipped norm)
        for p in diag.lm_parameters():
            p.requires_grad_(False)
    groups = [{"params": diag.lm_parameters(), "lr": args.lr}, {"params": diag.image_parameters(), "lr": proj_lr}]
    opt = torch.optim.AdamW([g for g in groups if g["params"] and g["lr"] > 0], weight_decay=0.0)
    warm = max(1, round(0.03 * args.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, 0.5 * (1 + math.cos(
        math.pi * min(1.0, max(0, s + 1 - warm) / max(1, args.steps - warm))))))
    print(f"mode {args.mode}, {len(train)} train / {len(held)} held-out questions, {args.steps} steps, lr {args.lr}, projector lr {proj_lr}",
          flush=True)
    window = []
    checkpoints = {args.steps // 3, 2 * args.steps // 3, args.steps}
    for step in range(1, args.steps + 1):
        batch = [train[int(j)] for j in rng.integers(len(train), size=args.batch_size)]
        if args.fresh:
            batch = [(i, q, g) for (i, _, _), (q, g) in zip(batch, questions([scenes[i] for i, _, _ in batch], rng, args.question))]
        if args.turns > 1:
            loss = diag.turns_loss([(i, [questions([scenes[i]], rng, args.question)[0] for _ in range(args.turns)]) for i, _, _ in batch])
        else:
            loss = diag.loss([(i, i, q) for i, q, _ in batch], [g for _, _, g in batch])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(diag.parameters(), 1.0)
        opt.step()
        sched.step()
        window.append(loss.item())
        if step % 100 == 0:
            print(f"step {step}: first-answer-token loss {np.mean(window):.3f} (chance 0.693)", flush=True)
            window = []
        if step in checkpoints:
            model.eval()
            own = diag.heldout(held, [i for i, _, _ in held])
            other = diag.heldout(held, shuffled)
            model.train()
            print(f"step {step}: held-out AUC own {own['AUC']:.3f} (acc@0 {own['acc@0']:.3f}), "
                  f"shuffled {other['AUC']:.3f}", flush=True)
    if args.save:
        model.save_pretrained(args.save)
        processor.save_pretrained(args.save)
        print(f"saved -> {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
