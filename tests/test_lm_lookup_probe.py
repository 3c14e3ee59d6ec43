"""`scripts/lm_lookup_probe.py`: existence questions after a written-out scene, scored by continuation."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.llava_helpers import import_script, make_lm


@pytest.fixture(scope="module")
def probe():
    return import_script("lm_lookup_probe")


def test_items_ask_about_present_and_absent_objects(probe):
    items = probe.lookup_items(40, seed=0, style="short")
    assert all(c.endswith(" in the image?") and c.count("Is there a") == 1 for c, _ in items)
    assert 5 < sum(g for _, g in items) < 35  # both answers occur
    assert probe.lookup_items(40, seed=0, style="short") == items  # seeded
    listed = probe.lookup_items(3, seed=0, style="list")
    assert all(c.startswith("The shapes are ") and ". Is there a" in c for c, _ in listed)


def test_continuation_logprob_equals_the_models_own_loss(probe, tiny_world, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = make_lm(tiny_world, tmp_path / "lm")
    tok, model = AutoTokenizer.from_pretrained(lm), AutoModelForCausalLM.from_pretrained(lm).eval()
    context, cont = "A small red circle on a gray background. Is there a red circle in the image?", " Yes"
    got = probe.continuation_logprob(model, tok, context, cont)
    ids = tok(context + cont, return_tensors="pt").input_ids
    n = ids.shape[1] - len(tok(context).input_ids)
    labels = torch.full_like(ids, -100)
    labels[0, -n:] = ids[0, -n:]
    with torch.no_grad():
        loss = model(ids, labels=labels).loss
    assert abs(got - float(-loss * n)) < 1e-4


def test_cli_prints_one_row_per_style(probe, tiny_world, tmp_path):
    lm = make_lm(tiny_world, tmp_path / "lm")
    r = subprocess.run([sys.executable, probe.__file__, "--model", str(lm), "--n", "6"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert [line.split(" | ")[0] for line in r.stdout.splitlines()[2:]] == ["| synthetic", "| short", "| list"]
