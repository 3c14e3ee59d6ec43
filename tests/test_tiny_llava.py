"""The tiny random Llava factory (`llava_train.tiny`): deterministic, so the chat tests' expectations hold."""
from __future__ import annotations

from safetensors.torch import load_file

from llava_train.tiny import make_tiny_llava


def _weights(path):
    return load_file(str(path / "model.safetensors"))


def test_same_seed_same_weights_and_tokenizer_other_seed_other_weights(tiny_llava_dir, tmp_path):
    again = make_tiny_llava(tmp_path / "again")
    a, b = _weights(tiny_llava_dir), _weights(again)
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)
    for name in ("config.json", "tokenizer.json", "processor_config.json", "chat_template.jinja"):
        assert (tiny_llava_dir / name).read_text() == (again / name).read_text(), name
    other = _weights(make_tiny_llava(tmp_path / "seed1", seed=1))
    assert any(not a[k].equal(other[k]) for k in a)
