"""The embedded synthetic world: a deterministic generator of images, captions, LLaVA JSON and eval splits.

    from clips_tower.world import generate_world
    manifest = generate_world("runs/world", preset="tiny", seed=0)   # or: clips-llava synth --out ... --preset tiny

See `generate.py` for the output layout and `presets.py` for the sizes.
"""
from clips_tower.world.generate import GENERATOR_VERSION, generate_world
from clips_tower.world.presets import PRESETS, WorldPreset, get_preset
from clips_tower.world.writers import WorldError

__all__ = ["GENERATOR_VERSION", "PRESETS", "WorldError", "WorldPreset", "generate_world", "get_preset"]
