#!/usr/bin/env bash
# Shared launcher of the LLaVA stage scripts: `deepspeed` (or LAUNCHER=torchrun) -m llava_train.train "$@".
# Not called directly; scripts/{pretrain_projector,finetune,finetune_lora}.sh exec it. NPROC processes (default 1);
# without CUDA it sets DS_ACCELERATOR=cpu and OMP_NUM_THREADS to the cores per process.
set -euo pipefail
cd "$(dirname "$0")/.."
NPROC=${NPROC:-1}
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
if [ -z "${CUDA_VISIBLE_DEVICES+x}" ] && ! $PY -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
  THREADS=$(( $(nproc) / NPROC )); [ "$THREADS" -ge 1 ] || THREADS=1
  export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu} OMP_NUM_THREADS=${OMP_NUM_THREADS:-$THREADS}
fi
PORT=${MASTER_PORT:-$($PY -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
if [ "${LAUNCHER:-deepspeed}" = torchrun ]; then
  exec $PY -m torch.distributed.run --nproc_per_node "$NPROC" --master_port "$PORT" -m llava_train.train "$@"
fi
exec $PY -m deepspeed.launcher.runner --num_gpus "$NPROC" --master_port "$PORT" --module llava_train.train "$@"
