#!/usr/bin/env bash
# Stage 2 (instruction tuning, projector + LLM, ZeRO-3): launch llava_train.train with a config and any --field value overrides.
#
#   NPROC=8 scripts/finetune.sh --config configs/llava/<real-scale>.yaml                # 8 GPUs
#   NPROC=1 DS_ACCELERATOR=cpu scripts/finetune.sh --config configs/llava/stage2_tiny.yaml \
#       --model_name_or_path runs/lm --vision_tower runs/tower \
#       --data_path runs/world/llava/<stage>.json --image_folder runs/world/llava/images --output_dir runs/finetune
#
# LAUNCHER=torchrun uses torchrun instead of deepspeed (same arguments). CPU: NPROC=1 or 2.
exec "$(dirname "$0")/launch_stage.sh" "$@"
