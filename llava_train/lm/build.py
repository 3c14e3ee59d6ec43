"""Create and pretrain the small causal LM that stands in for Vicuna/Llama on the embedded world.

    from llava_train.lm.build import init_lm, pretrain_lm
    init_lm("runs/world", "runs/lm-init", preset="tiny")        # BPE tokenizer + random Llama
    pretrain_lm("runs/lm-init", "runs/world", "runs/lm", steps=200)  # HF Trainer, causal LM loss
    pretrain_lm("runs/lm-lookup", ["runs/world/corpus.txt", "runs/world/lookup.txt"], "runs/lm")  # several files

Both write ordinary HF directories (`AutoModelForCausalLM` / `AutoTokenizer` load them). The
tokenizer is a byte-level BPE trained with `tokenizers` on the world's `corpus.txt`; like Llama it
has `<s>`, `</s>`, `<unk>` and no pad token (LLaVA assembly adds one), it prepends `<s>` to every
encoded text as Llama's tokenizer does (`add_bos_token=True`: LLaVA-1.5's inputs all start with `<s>`,
and the LM pretrains with `<s>` opening each sentence), and it carries its own chat template (the
`chat_template` conversation template of `llava_train.templates` uses it).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from llava_train.lm.presets import get_lm_preset
from llava_train.samples import IGNORE_INDEX

log = logging.getLogger(__name__)

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>"]

# The LM's own chat template (Zephyr-like turns). Content is a string, or a list of
# {"type": "image"|"text"} parts with images rendered first as "<image>\n".
LM_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}"
    "{% for part in message['content'] if part['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] if part['type'] == 'text' %}{{ part['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ '</s>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def corpus_file(corpus: str | Path) -> Path:
    """Accept a world directory (uses `corpus.txt`) or a text file; one sentence per line."""
    path = Path(corpus)
    path = path / "corpus.txt" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no corpus at {path} (expected a world dir with corpus.txt, or a text file)")
    try:
        with open(path, encoding="utf-8") as f:
            while f.read(1 << 20):  # the tokenizer trainer would fail on non-UTF-8 without naming the file
                pass
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: the corpus is not UTF-8 text ({e.reason} at byte {e.start})") from None
    return path


def train_tokenizer(corpus: str | Path, vocab_size: int):
    """Byte-level BPE trained on the corpus, wrapped as a `PreTrainedTokenizerFast`."""
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train([str(corpus_file(corpus))], trainer=trainer)
    # Llama's post-processor: "<s> $A" (and "<s> $A <s> $B" for pairs), no `</s>` appended.
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        chat_template=LM_CHAT_TEMPLATE,
    )


def init_lm(corpus: str | Path, out: str | Path, preset: str = "tiny", seed: int = 0) -> Path:
    """Train the tokenizer, build a random Llama of the preset's size, save both to `out`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    fields = get_lm_preset(preset)
    tokenizer = train_tokenizer(corpus, fields.pop("vocab_size"))
    config = LlamaConfig(
        vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=False, **fields,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    log.info("lm init: preset %s, vocab %d, %.2fM parameters -> %s", preset, len(tokenizer), n / 1e6, out)
    return out


def corpus_files(corpus) -> list[Path]:
    """`corpus_file` of one path, or of each of a list of them (read in that order)."""
    return [corpus_file(c) for c in ([corpus] if isinstance(corpus, (str, Path)) else corpus)]


def _lines(corpus) -> list[str]:
    return [line for path in corpus_files(corpus) for line in path.read_text(encoding="utf-8").splitlines()]


def _blocks(corpus, tokenizer, block_size: int) -> dict[str, torch.Tensor]:
    """The corpus's sentences packed whole into (N, block_size) blocks, one attention segment each.

    Each sentence is `<s> text </s>`; sentences fill a block in corpus order until the next one does
    not fit, and the rest of the block is padding (label IGNORE). `position_ids` restart at 0 at every
    sentence, which makes transformers' causal mask block-diagonal (`find_packed_sequence_indices`;
    the batch carries no `attention_mask`), so no token attends to another sentence. That matters:
    with the sentences run together, a question's words match words of the sentences before it: the
    demo-sized LM trained here on 20000 colour-list membership lines ("The shapes are red, blue. Is
    there a cyan shape in the image? No.") stays at chance (AUC 0.52 after 600 steps at lr 1e-3),
    and with one sentence per segment it reaches 1.00 with the same steps. A sentence longer than a
    block is cut into block-sized pieces, each its own segment. Labels of each segment's first token
    are IGNORE (no position predicts it).
    """
    ids_rows, pos_rows, lab_rows = [], [], []
    total = 0
    ids: list[int] = []
    pos: list[int] = []
    lab: list[int] = []

    def close():
        pad = block_size - len(ids)
        ids_rows.append(ids + [tokenizer.eos_token_id] * pad)
        pos_rows.append(pos + list(range(pad)))
        lab_rows.append(lab + [IGNORE_INDEX] * pad)

    for line in _lines(corpus):
        if not line.strip():
            continue
        sentence = [tokenizer.bos_token_id, *tokenizer(line.strip(), add_special_tokens=False).input_ids,
                    tokenizer.eos_token_id]
        total += len(sentence)
        for piece in (sentence[i:i + block_size] for i in range(0, len(sentence), block_size)):
            if len(ids) + len(piece) > block_size:
                close()
                ids, pos, lab = [], [], []
            ids += piece
            pos += range(len(piece))
            lab += [IGNORE_INDEX, *piece[1:]]
    if total < block_size:
        raise ValueError(f"corpus too small for one block of {block_size} tokens ({total} tokens)")
    close()
    return {"input_ids": torch.tensor(ids_rows), "position_ids": torch.tensor(pos_rows),
            "labels": torch.tensor(lab_rows)}  # each (N, T)


class _BlockDataset(torch.utils.data.Dataset):
    def __init__(self, blocks: dict[str, torch.Tensor]):
        self.blocks = blocks

    def __len__(self) -> int:
        return len(self.blocks["input_ids"])

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.blocks.items()}


def pretrain_lm(model_dir: str | Path, corpus, out: str | Path, steps: int = 200,
                lr: float = 3e-3, batch_size: int = 16, block_size: int = 128, seed: int = 0) -> dict:
    """Short causal-LM pretraining with HF Trainer; saves model + tokenizer to `out`.

    `corpus` is a world dir (its `corpus.txt`), a text file, or a list of them, read in order (the
    Trainer shuffles the blocks). Returns {"first_loss", "last_loss", "steps"} so callers can check
    that the LM learned.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from clips_tower.inputs import check_model_dir

    check_model_dir(model_dir, tokenizer=True, what="language model")  # damaged files: one line naming them
    corpus_files(corpus)  # and the corpus, before anything is loaded
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    model.config.use_cache = False  # with a cache, transformers' mask builder ignores the packed position_ids
    data = _BlockDataset(_blocks(corpus, tokenizer, block_size))
    out = Path(out)
    args = TrainingArguments(
        output_dir=str(out / "trainer"), max_steps=steps, learning_rate=lr, warmup_steps=max(1, steps // 20),
        lr_scheduler_type="cosine", per_device_train_batch_size=batch_size, weight_decay=0.0,
        logging_steps=max(1, steps // 10), save_strategy="no", report_to=[], seed=seed,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    result = {"first_loss": losses[0], "last_loss": losses[-1], "steps": steps}
    log.info("lm pretrain: loss %.3f -> %.3f (ln V = %.2f) -> %s", result["first_loss"],
             result["last_loss"], math.log(len(tokenizer)), out)
    return result

