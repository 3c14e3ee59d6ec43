"""clips_tower: CLIPS tower pretraining (open_clip components + captioner) and the tower adapter
that exports any CLIPS / open_clip / OpenAI-CLIP tower as an exact HF-native LLaVA vision tower."""
