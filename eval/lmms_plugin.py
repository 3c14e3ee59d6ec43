"""lmms-eval plugin registration: pyproject's `[project.entry-points."lmms_eval.models"]` points here.

lmms-eval loads this while `lmms_eval.models` is still importing, so it must stay light: it only
names the class (`eval/model.py`), which lmms-eval imports when `--model clips_llava_hf` is used.

    python -m lmms_eval models | grep clips_llava_hf     # after `pip install -e .`
"""
from lmms_eval.models.registry_v2 import ModelManifest

MODEL_NAME = "clips_llava_hf"
MANIFEST = ModelManifest(model_id=MODEL_NAME, simple_class_path="clips_llava_eval.model.ClipsLlavaHf")
