"""Shared pytest fixtures: offline environment, a tiny synthetic world and a tiny stock HF Llava.

Both fixtures are session-scoped so the whole suite pays for each once.
"""
from __future__ import annotations

import os

import pytest

for _k, _v in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "DS_ACCELERATOR": "cpu",
}.items():
    os.environ.setdefault(_k, _v)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory):
    """The `tiny` preset of the embedded synthetic world (seed 0), generated once per session."""
    from clips_tower.world import generate_world

    out = tmp_path_factory.mktemp("world") / "tiny"
    generate_world(out, preset="tiny", seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory):
    """A tiny random stock-HF `LlavaForConditionalGeneration` directory (model + processor)."""
    from llava_train.tiny import make_tiny_llava

    out = tmp_path_factory.mktemp("llava") / "tiny-llava"
    make_tiny_llava(out)
    return out
