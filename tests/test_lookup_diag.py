"""`scripts/lookup_diag.py`: its hand-assembled image positions give the stock Llava's own logits,
and its cell codes and questions follow the scene."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.llava_helpers import import_script


@pytest.fixture(scope="module")
def diag():
    return import_script("lookup_diag")


def test_proj_logits_equal_the_stock_llava_forward(diag, tiny_llava_dir):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from clips_tower.world.scene import render_scene, sample_scene

    processor = AutoProcessor.from_pretrained(tiny_llava_dir)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).eval()
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng, 1, 6) for _ in range(3)]
    size = processor.image_processor.crop_size["height"]
    d = diag.Diag(model, processor, "proj", scenes, size)
    # question of scene 0 with scene 2's image: the image row is the one the triple names
    batch = [(0, 0, "Is there a red shape in the image?"), (1, 2, "Is there a cyan shape?")]
    with torch.no_grad():
        got = d.logits(batch)
        for b, (_, img, q) in enumerate(batch):
            text = processor.tokenizer.apply_chat_template(
                [{"role": "user", "content": "<image>\n" + q + diag.SHORT}], tokenize=False, add_generation_prompt=True)
            image = render_scene(scenes[img], size)
            inputs = processor(text=[text + processor.tokenizer.decode(d.shared)], images=[image], return_tensors="pt",
                               add_special_tokens=False)
            assert inputs["input_ids"][0].tolist() == d.prompt_ids(q)
            want = model(**inputs).logits[0, -1]
            assert torch.allclose(got[b], want, atol=1e-4), (got[b] - want).abs().max()
        assert not torch.allclose(got[1], d.logits([(1, 1, batch[1][2])])[0], atol=1e-4)  # the image matters


def test_cell_codes_and_questions_follow_the_scene(diag):
    from clips_tower.world.scene import COLORS, sample_scene

    rng = np.random.default_rng(3)
    scenes = [sample_scene(rng, 1, 6) for _ in range(200)]
    code = diag.cell_codes(scenes[0])
    assert code.shape == (9, len(COLORS) + 6 + 2 + 1)
    assert code[:, -1].sum() == 9 - len(scenes[0].objects) and (code.sum(1) == torch.where(code[:, -1] > 0, 1, 3)).all()
    for o in scenes[0].objects:
        assert code[o.row * 3 + o.col, list(COLORS).index(o.color)] == 1
    qs = diag.questions(scenes, seed=0)
    for scene, (q, yes) in zip(scenes, qs):
        color = q.removeprefix("Is there a ").removesuffix(" shape in the image?")
        assert color in COLORS and yes == (color in {o.color for o in scene.objects})
    assert 0.4 < np.mean([y for _, y in qs]) < 0.6
    objects = diag.questions(scenes, seed=0, kind="object")  # POPE's form: half the negatives adversarial
    shared_shape = []
    for scene, (q, yes) in zip(scenes, objects):
        name = q.removeprefix("Is there a ").removesuffix(" in the image?")
        assert yes == (name in scene.names)
        if not yes:
            shared_shape.append(name.split()[1] in {o.shape for o in scene.objects})
    assert 0.4 < np.mean([y for _, y in objects]) < 0.6 and 0.5 < np.mean(shared_shape) < 0.9


def test_multi_turn_loss_equals_the_stock_llava_loss(diag, tiny_llava_dir):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    from clips_tower.world.scene import render_scene, sample_scene

    processor = AutoProcessor.from_pretrained(tiny_llava_dir)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir).eval()
    scenes = [sample_scene(np.random.default_rng(1), 1, 6)]
    size = processor.image_processor.crop_size["height"]
    d = diag.Diag(model, processor, "proj", scenes, size)
    qas = [("Is there a red shape in the image?", True), ("Is there a blue shape in the image?", False),
           ("Is there a cyan shape in the image?", True)]
    ids, where, target = d.conversation_ids(qas)
    assert [ids[w + 1] for w in where] == target == [d.yes, d.no, d.yes]
    assert ids.count(d.image_id) == d.n_image and processor.tokenizer.decode(ids).count("ASSISTANT:") == 3
    labels = torch.full((1, len(ids)), -100)
    labels[0, [w + 1 for w in where]] = torch.tensor(target)
    pv = processor.image_processor([render_scene(scenes[0], size)], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        want = model(input_ids=torch.tensor([ids]), pixel_values=pv, labels=labels).loss
        got = d.turns_loss([(0, qas)])
    assert torch.allclose(got, want, atol=1e-5), (got, want)


def test_frozen_lm_trains_only_the_projector_and_saves_a_stock_llava(diag, tiny_llava_dir, tmp_path):
    # --lr 0 freezes the LM; --proj-lr trains the projector; --save writes a Llava that stock
    # transformers loads, with the vicuna_v1 template its questions used (for scripts/yes_no_probe.py).
    from safetensors.torch import load_file
    from transformers import AutoProcessor

    out = tmp_path / "saved"
    assert diag.main(["--model", str(tiny_llava_dir), "--mode", "proj", "--world-preset", "tiny", "--train", "8",
                      "--heldout", "8", "--steps", "3", "--batch-size", "2", "--lr", "0", "--proj-lr", "1e-2",
                      "--save", str(out)]) == 0
    before, after = (load_file(str(d / "model.safetensors")) for d in (tiny_llava_dir, out))
    lm = [k for k in before if "language_model" in k or "lm_head" in k]
    proj = [k for k in before if "multi_modal_projector" in k]
    assert lm and proj and set(before) == set(after)
    assert all(torch.equal(before[k], after[k]) for k in lm)
    assert any(not torch.equal(before[k], after[k]) for k in proj)
    prompt = AutoProcessor.from_pretrained(out).apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Q?"}]}], add_generation_prompt=True)
    assert prompt.endswith("USER: <image>\nQ? ASSISTANT:")
    with pytest.raises(SystemExit):
        diag.main(["--model", str(tiny_llava_dir), "--mode", "words", "--save", str(tmp_path / "x")])
