#!/usr/bin/env bash
# Stage 2 with LoRA (add --stage stage2_qlora for QLoRA): launch llava_train.train with a config and any --field value overrides.
#
#   NPROC=8 scripts/finetune_lora.sh --config configs/llava/<real-scale>.yaml                # 8 GPUs
#   NPROC=1 DS_ACCELERATOR=cpu scripts/finetune_lora.sh --config configs/llava/stage2_lora_tiny.yaml \
#       --model_name_or_path runs/lm --vision_tower runs/tower \
#       --data_path runs/world/llava/<stage>.json --image_folder runs/world/llava/images --output_dir runs/finetune_lora
#
# LAUNCHER=torchrun uses torchrun instead of deepspeed (same arguments). CPU: NPROC=1 or 2.
# Multi-node (see scripts/launch_stage.sh; NPROC = processes per node), two nodes x 8 GPUs:
#   LAUNCHER=torchrun NNODES=2 NODE_RANK=0 MASTER_ADDR=node0 MASTER_PORT=29500 NPROC=8 \
#       scripts/finetune_lora.sh --config configs/llava/<real-scale>.yaml     # on node0; the same with NODE_RANK=1 on node1
#   HOSTFILE=hostfile MASTER_ADDR=node0 MASTER_PORT=29500 NPROC=8 \
#       scripts/finetune_lora.sh --config configs/llava/<real-scale>.yaml     # once, on node0: deepspeed starts both over ssh/pdsh
exec "$(dirname "$0")/launch_stage.sh" "$@"
