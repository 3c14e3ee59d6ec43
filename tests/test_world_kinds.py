"""The world's item-kind table: one entry per kind covers sampling, rendering, file names and conversations."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from clips_tower.io import CHECKOUT
from clips_tower.world import evalsets
from clips_tower.world.conversations import STAGE2_MIX, stage2_record
from clips_tower.world.generate import STREAMS, render_png, sample_item
from clips_tower.world.kinds import CONVERSATIONS, ITEM_KINDS
from clips_tower.world.presets import get_preset
from clips_tower.world.scene import Scene
from clips_tower.world.signs import BarChart, Sign


def test_every_stage2_kind_has_exactly_one_owner():
    owners = [c for k in ITEM_KINDS.values() for c in (*k.converse, *k.imagined)]
    assert len(owners) == len(set(owners)) and set(owners) == set(STAGE2_MIX) == set(CONVERSATIONS)
    assert CONVERSATIONS["text"][0] == "sign" and CONVERSATIONS["chart"][0] == "chart"
    assert CONVERSATIONS["text_only"][0] == "scene" and CONVERSATIONS["text_only"][2] is False


def test_table_fields_name_real_streams_presets_and_distinct_prefixes():
    p = get_preset("tiny")
    assert len({k.prefix for k in ITEM_KINDS.values()}) == len(ITEM_KINDS)
    for k in ITEM_KINDS.values():
        assert k.stream in STREAMS and isinstance(getattr(p, k.count), int)
    assert {kind for kind, _ in evalsets.EVAL_TASKS.values()} <= set(ITEM_KINDS)


@pytest.mark.parametrize("kind,cls", [("scene", Scene), ("sign", Sign), ("chart", BarChart)])
def test_sample_render_converse_per_kind(kind, cls):
    p = get_preset("tiny")
    item = sample_item(kind, np.random.default_rng(0), p)
    assert isinstance(item, cls)
    png, digest = render_png((kind, item, 32))
    assert png.startswith(b"\x89PNG") and len(digest) == 64
    for conv, turns in ITEM_KINDS[kind].converse.items():
        record = stage2_record(3, conv, "x.png", turns(item, np.random.default_rng(1)))
        assert record["id"] == f"synth-{conv}-000003" and record["image"] == "x.png"
        assert record["conversations"][0]["value"].startswith("<image>\n")
        assert [t["from"] for t in record["conversations"]][:2] == ["human", "gpt"]


def test_text_only_records_carry_no_image():
    scene = sample_item("scene", np.random.default_rng(0), get_preset("tiny"))
    record = stage2_record(0, "text_only", None, ITEM_KINDS["scene"].imagined["text_only"](scene, np.random.default_rng(2)))
    assert "image" not in record and not any("<image>" in t["value"] for t in record["conversations"])


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="item kind"):
        sample_item("hologram", np.random.default_rng(0), get_preset("tiny"))


def test_yes_no_turns_cover_the_prompt_lmms_eval_mme_actually_asks():
    """lmms-eval's MME task swaps MME's " Please answer yes or no." for the short-answer post-prompt; the
    stage-2 yes/no turns must include that exact form, or the model answers MME with a phrase."""
    from lmms_eval.tasks.mme.utils import mme_doc_to_text

    from clips_tower.world.conversations import SHORT, yes_no_turns
    from clips_tower.world.questions import MME_SUFFIX

    from lmms_eval.utils import load_yaml_config

    template = load_yaml_config(str(CHECKOUT / "eval" / "tasks" / "_synth_template.yaml"), mode="simple")
    rng, p = np.random.default_rng(0), get_preset("tiny")
    turns = [t for i in range(60) for t in yes_no_turns(sample_item("scene", np.random.default_rng(i), p), rng)]
    asked = mme_doc_to_text({"question": "Is the star red? Please answer yes or no."},
                            template["lmms_eval_specific_kwargs"]["default"])
    assert asked == "Is the star red?" + SHORT  # lmms-eval's rewrite, with our eval template's prompts
    ends = Counter("mme" if q.endswith("?" + MME_SUFFIX) else "short" if q.endswith("?" + SHORT) else q
                   for q, _ in turns)
    assert set(ends) == {"mme", "short"} and min(ends.values()) >= len(turns) // 4, ends
    assert {a for _, a in turns} == {"Yes", "No"}
