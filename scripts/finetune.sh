#!/usr/bin/env bash
# Stage 2 (instruction tuning, projector + LLM, ZeRO-3): launch llava_train.train with a config and any --field value overrides.
#
#   NPROC=8 scripts/finetune.sh --config configs/llava/<real-scale>.yaml                # 8 GPUs
#   NPROC=1 DS_ACCELERATOR=cpu scripts/finetune.sh --config configs/llava/stage2_tiny.yaml \
#       --model_name_or_path runs/lm --vision_tower runs/tower \
#       --data_path runs/world/llava/<stage>.json --image_folder runs/world/llava/images --output_dir runs/finetune
#
# LAUNCHER=torchrun uses torchrun instead of deepspeed (same arguments). CPU: NPROC=1 or 2.
set -euo pipefail
cd "$(dirname "$0")/.."
NPROC=${NPROC:-1}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
if [ -z "${CUDA_VISIBLE_DEVICES+x}" ] && ! $PY -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
  export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
PORT=${MASTER_PORT:-$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
if [ "${LAUNCHER:-deepspeed}" = torchrun ]; then
  exec $PY -m torch.distributed.run --nproc_per_node "$NPROC" --master_port "$PORT" -m llava_train.train "$@"
fi
exec $PY -m deepspeed.launcher.runner --num_gpus "$NPROC" --master_port "$PORT" --module llava_train.train "$@"
