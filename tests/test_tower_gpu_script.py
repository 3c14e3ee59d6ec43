"""CPU smoke test of scripts/gpu_check_tower.py (`--device cpu --tiny`): one JSON line, bf16 parity ok."""
from __future__ import annotations

import importlib.util
import json

from tests.tower_helpers import REPO


def test_gpu_check_script_cpu_tiny(capsys):
    spec = importlib.util.spec_from_file_location("gpu_check_tower", REPO / "scripts" / "gpu_check_tower.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--device", "cpu", "--tiny", "--token-images", "2"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    res = json.loads(line)
    assert res["ok"] and res["dtype"] == "bfloat16" and [r["tower"] for r in res["results"]] == ["tiny", "demo"]
    for r in res["results"]:
        assert r["images_per_s"] > 0 and r["pixels_max_abs"] == 0.0
