"""`scripts/yes_no_probe.py`: teacher-forced yes/no margins, checked against HF's own loss."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.llava_helpers import import_script


@pytest.fixture(scope="module")
def probe():
    return import_script("yes_no_probe")


def test_auc_and_summary_by_hand():
    from clips_llava_eval.margins import auc, summarize

    assert auc([2.0, 3.0], [1.0, 0.0]) == 1.0
    assert auc([0.0], [1.0]) == 0.0 and auc([1.0], [1.0]) == 0.5
    s = summarize([1.0, -1.0, 2.0, 0.5], [True, False, False, True])
    assert s == {"acc@0": 0.75, "yes-ratio": 0.75, "AUC": 0.5}  # 3 of 4 right; pairs: 1>-1, 0.5>-1


def test_continuation_logprob_equals_the_models_own_loss(probe, tiny_llava_dir, tiny_world):
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_llava_dir)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).eval()
    image = Image.open(min((tiny_world / "eval" / "images").glob("pope_*.png"))).convert("RGB")
    prompts = [probe.prompt(processor.tokenizer, "Is there a red circle in the image?"),
               probe.prompt(processor.tokenizer, "Is there a blue star in the image? Please answer yes or no.")]
    assert "Please answer" not in prompts[1] and prompts[1].count("single word or phrase") == 1
    got = probe.continuation_logprob(model, processor, prompts, [image, image], " Yes")
    for i, p in enumerate(prompts):  # one unpadded sequence, labels on the continuation only
        inputs = processor(text=[p + " Yes"], images=[image], return_tensors="pt")
        n = len(processor.tokenizer(p + " Yes", add_special_tokens=False).input_ids) - \
            len(processor.tokenizer(p, add_special_tokens=False).input_ids)
        labels = torch.full_like(inputs["input_ids"], -100)
        labels[0, -n:] = inputs["input_ids"][0, -n:]
        with torch.no_grad():
            loss = model(**inputs, labels=labels).loss
        assert torch.allclose(got[i], -loss * n, atol=1e-4), (got[i], -loss * n)


def test_cli_prints_own_and_shuffled_rows(probe, tiny_llava_dir, tiny_world):
    r = subprocess.run([sys.executable, probe.__file__, "--model", str(tiny_llava_dir), "--world", str(tiny_world),
                        "--tasks", "pope,mme", "--limit", "4"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith(("| pope", "| mme"))]
    assert [row.split(" | ")[1] for row in rows] == ["own", "shuffled", "own", "shuffled"]
