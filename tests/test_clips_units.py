"""CLIPS pretraining, single parts: token reduction (exact, seeded), packing, the captioner mask, text trimming."""
from __future__ import annotations

import random

import pytest
import torch

from clips_tower.captioner import Captioner, captioner_attn_mask
from clips_tower.model import CLIPSModel, load_arch
from clips_tower.retrieval import recall_at_k
from clips_tower.text_reduction import STRATEGIES, get_strategy, split_sentences
from clips_tower.tokenizer import build_tokenizer

ARCH = "configs/clips/models/tiny.json"
# a fixed "caption": 4 sentences of token ids (10..14, 20..22, 30..36, 40..41), 17 tokens in all
SENTENCES = [[10, 11, 12, 13, 14], [20, 21, 22], [30, 31, 32, 33, 34, 35, 36], [40, 41]]


@pytest.mark.parametrize("name,k,expected", [
    ("full", 6, [10, 11, 12, 13, 14, 20, 21, 22, 30, 31, 32, 33, 34, 35, 36, 40, 41]),
    ("truncation", 6, [10, 11, 12, 13, 14, 20]),
    ("random", 6, [10, 14, 22, 30, 34, 35]),
    ("block", 6, [21, 22, 30, 31, 32, 33]),
    # Random(0) visits sentences in the order 2, 0, 1, 3
    ("subcaption", 6, [10, 11, 12, 13, 14]),
    ("subcaption", 4, [20, 21, 22]),
    ("subcaption", 2, [40, 41]),
    ("subcaption", 1, [30]),  # no sentence fits: the first visited one, truncated
    ("subcaption", 100, [10, 11, 12, 13, 14, 20, 21, 22, 30, 31, 32, 33, 34, 35, 36, 40, 41]),
])
def test_reduction_exact_outputs(name, k, expected):
    assert get_strategy(name)(SENTENCES, k, random.Random(0)) == expected


def test_reduction_properties_and_registry():
    for seed in range(20):
        r = random.Random(seed)
        flat = [t for s in SENTENCES for t in s]
        picked = STRATEGIES["random"](SENTENCES, 7, r)
        assert len(picked) == 7 and picked == [t for t in flat if t in picked]  # order kept
        blk = STRATEGIES["block"](SENTENCES, 7, r)
        i = flat.index(blk[0])
        assert blk == flat[i : i + 7]
        sub = STRATEGIES["subcaption"](SENTENCES, 9, r)
        assert len(sub) <= 9 and all(t // 10 in {s[0] // 10 for s in SENTENCES} for t in sub)
    with pytest.raises(ValueError, match="known: full, truncation, random, block, subcaption"):
        get_strategy("Subcaption")
    assert split_sentences("A red cube. Two dots!  Why? end") == ["A red cube.", "Two dots!", "Why?", "end"]


def test_pack_clip_format_and_encoding():
    tok = build_tokenizer(load_arch(ARCH)["text_cfg"])
    ids = tok.encode("a red cube.")
    assert ids and tok.bos_id not in ids
    batch = tok.pack([ids, ids[:1]])
    assert batch.shape == (2, len(ids) + 2)
    assert batch[1].tolist() == [tok.bos_id, ids[0], tok.eos_id] + [0] * (len(ids) - 1)
    assert tok.pack([list(range(1, 200))]).shape[1] == tok.context_length  # capped at context


def test_captioner_mask_structure():
    m = captioner_attn_mask(n_prefix=3, n_query=3)  # True = blocked
    expected = torch.tensor([
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 1, 1, 1],
        [0, 0, 0, 0, 1, 1],
        [0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0],
    ], dtype=torch.bool)
    assert torch.equal(m, expected)


def test_captioner_attention_behaviour():
    torch.manual_seed(0)
    cap = Captioner(vision_width=16, vocab_size=50, width=16, layers=2, heads=2, num_queries=5, prefix_len=6).eval()
    img = torch.randn(2, 4, 16)
    web = torch.randint(1, 50, (2, 6))
    valid = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    base = cap(img, web, valid)  # (2*5, V): all query positions
    # padding keys are invisible: changing a padded id of sample 1 changes nothing
    web2 = web.clone()
    web2[1, 4] = (web2[1, 4] + 1) % 50
    assert torch.allclose(cap(img, web2, valid), base, atol=1e-6)
    # the web caption is seen: changing a valid id of sample 0 changes its predictions
    web3 = web.clone()
    web3[0, 0] = (web3[0, 0] + 1) % 50
    assert not torch.allclose(cap(img, web3, valid)[:5], base[:5], atol=1e-4)
    # queries are causal: perturbing query 3 leaves queries 0..2 unchanged and changes 3
    with torch.no_grad():
        cap.queries[3] += torch.randn(16)  # (a constant shift would vanish in the LayerNorms)
    pert = cap(img, web, valid).view(2, 5, -1)
    b = base.view(2, 5, -1)
    assert torch.allclose(pert[:, :3], b[:, :3], atol=1e-6)
    assert not torch.allclose(pert[:, 3], b[:, 3], atol=1e-4)
    # target_valid selects positions in row-major order
    tv = torch.zeros(2, 5, dtype=torch.bool)
    tv[0, 1] = tv[1, 4] = True
    assert torch.allclose(cap(img, web, valid, tv), pert[tv], atol=1e-6)


def test_trimmed_text_encoding_equals_open_clip_padded():
    torch.manual_seed(0)
    arch = load_arch(ARCH)
    model = CLIPSModel(arch, use_captioner=False).eval()
    tok = build_tokenizer(arch["text_cfg"])
    seqs = [tok.encode("a small red cube on the left."), tok.encode("two dots")]
    short, full = tok.pack(seqs), tok.pack(seqs, length=tok.context_length)
    assert short.shape[1] < full.shape[1] == tok.context_length
    with torch.no_grad():
        ours = model.encode_text(short)
        ref = model.clip.encode_text(full, normalize=True)  # open_clip's own path, full context
    assert torch.allclose(ours, ref, atol=1e-5)


def test_recall_at_k_by_hand():
    # 3 images; texts 0,1 belong to image 0, text 2 to image 1, text 3 to image 2
    sim = torch.tensor([
        [0.1, 0.9, 0.0, 0.5],  # image 0: its best caption (text 1) ranks first -> i2t hit@1
        [0.8, 0.0, 0.3, 0.2],  # image 1: its caption (text 2) ranks 2nd -> hit@5, not @1
        [0.7, 0.6, 0.5, 0.1],  # image 2: its caption (text 3) ranks 4th
    ])
    r = recall_at_k(sim, [0, 0, 1, 2], ks=(1, 2, 5))
    assert r["i2t_R@1"] == pytest.approx(100 / 3) and r["i2t_R@2"] == pytest.approx(200 / 3)
    assert r["i2t_R@5"] == 100.0
    # t2i ranks of the true image: text0 -> 3rd, text1 -> 1st, text2 -> 2nd, text3 -> 3rd
    assert r["t2i_R@1"] == 25.0 and r["t2i_R@2"] == 50.0 and r["t2i_R@5"] == 100.0


def test_every_run_config_loads_and_names_an_architecture():
    from pathlib import Path

    from clips_tower.config import load_run_config

    names = sorted(p.stem for p in Path("configs/clips").glob("*.yaml"))
    assert {"tiny", "clip-web", "clips", "clips-full-caption", "clips-block", "clips-no-captioner"} <= set(names)
    for name in names:
        cfg = load_run_config(f"configs/clips/{name}.yaml")
        arch = load_arch(cfg.model)
        assert not cfg.method.captioner or arch["captioner_cfg"]["num_queries"] > 0


def test_clips_tokenizer_mode_without_vocab_is_a_clear_error(monkeypatch, tmp_path):
    from clips_tower.tokenizer import TokenizerUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache: the vocabulary is surely absent
    text_cfg = load_arch("configs/clips/models/ViT-L-14-CLIPS-224.json")["text_cfg"]
    with pytest.raises(TokenizerUnavailableError, match="bert-base-uncased"):
        build_tokenizer(text_cfg)


@pytest.mark.parametrize("warmup, total", [(2, 20), (500, 10000), (0, 7), (3, 3), (1, 2)])
def test_schedule_is_open_clip_train_cosine_lr(warmup, total):
    """Our LambdaLR factor gives open_clip_train's `cosine_lr` learning rates at every step of a run.

    It stays a LambdaLR (its state goes into checkpoints; `cosine_lr` is a stateless setter that
    divides by zero when total == warmup). transformers' `get_cosine_schedule_with_warmup` is not
    the same schedule: its warmup starts at lr 0 (step / warmup, ours (step + 1) / warmup)."""
    from open_clip_train.scheduler import cosine_lr
    from transformers import get_cosine_schedule_with_warmup

    from clips_tower.train_step import cosine_with_warmup

    base = 1e-3
    opt = torch.optim.SGD([torch.zeros(1)], lr=base)
    ours = torch.optim.lr_scheduler.LambdaLR(opt, cosine_with_warmup(warmup, total))
    oc_opt = torch.optim.SGD([torch.zeros(1)], lr=base)
    oc = cosine_lr(oc_opt, base, warmup, total)
    for step in range(total):  # every step of a run
        assert ours.get_last_lr()[0] == pytest.approx(oc(step), rel=0, abs=1e-12), step
        opt.step()
        ours.step()
    if total > warmup:
        assert ours.get_last_lr()[0] == 0.0  # logged with the last step: the cosine reached 0
    if warmup:
        hf = get_cosine_schedule_with_warmup(torch.optim.SGD([torch.zeros(1)], lr=base), warmup, total)
        assert hf.get_last_lr()[0] == 0.0 != cosine_with_warmup(warmup, total)(0)
