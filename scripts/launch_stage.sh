#!/usr/bin/env bash
# Shared launcher of the LLaVA stage scripts: `deepspeed` (or LAUNCHER=torchrun) -m llava_train.train "$@".
# Not called directly; scripts/{pretrain_projector,finetune,finetune_lora}.sh exec it. NPROC processes (default 1);
# without CUDA it sets DS_ACCELERATOR=cpu and OMP_NUM_THREADS to the cores per process. The rest of the process
# set-up (gloo for CPU + DeepSpeed, a single process's env, ZeRO-3) is clips_tower/distributed.py.
#
# Multi-node, configured by env (NPROC = processes per node):
#   NNODES  nodes (default 1)        NODE_RANK  this node, 0..NNODES-1
#   MASTER_ADDR, MASTER_PORT         node 0's address and a free port on it (required for multi-node)
#   HOSTFILE                         deepspeed only: MPI-style hostfile ("host slots=N" per line)
# LAUNCHER=torchrun: run the script on every node with its NODE_RANK (static rendezvous at MASTER_ADDR:MASTER_PORT).
# deepspeed + HOSTFILE: run it once on the first host; deepspeed starts every node over ssh/pdsh (NNODES: top
#   NNODES hosts; NPROC: processes per host, default the hostfile's slots). deepspeed + HOSTFILE + NODE_RANK:
#   run it on every node (deepspeed --no_ssh). deepspeed without a HOSTFILE is single-node only.
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "launch_stage.sh: $*" >&2; exit 2; }
NPROC_SET=${NPROC:+1}
NPROC=${NPROC:-1}
NNODES=${NNODES:-1}
LAUNCHER=${LAUNCHER:-deepspeed}
HOSTFILE=${HOSTFILE:-}
case "$NPROC" in '' | *[!0-9]* | 0) die "NPROC must be a positive integer (got '$NPROC')" ;; esac
case "$NNODES" in '' | *[!0-9]* | 0) die "NNODES must be a positive integer (got '$NNODES')" ;; esac
case "$LAUNCHER" in torchrun | deepspeed) ;; *) die "LAUNCHER must be deepspeed or torchrun (got '$LAUNCHER')" ;; esac
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
if [ -z "${CUDA_VISIBLE_DEVICES+x}" ] && ! $PY -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
  THREADS=$(( $(nproc) / NPROC )); [ "$THREADS" -ge 1 ] || THREADS=1
  export DS_ACCELERATOR=${DS_ACCELERATOR:-cpu} OMP_NUM_THREADS=${OMP_NUM_THREADS:-$THREADS}
fi

if [ "$NNODES" -eq 1 ] && [ -z "$HOSTFILE" ]; then  # one node: a free port unless MASTER_PORT is given
  PORT=${MASTER_PORT:-$($PY -m clips_tower.distributed free-port)}
  if [ "$LAUNCHER" = torchrun ]; then
    exec $PY -m llava_train.torchrun --nproc_per_node "$NPROC" --master_port "$PORT" -m llava_train.train "$@"
  fi
  exec $PY -m deepspeed.launcher.runner --num_gpus "$NPROC" --master_port "$PORT" --module llava_train.train "$@"
fi

[ -n "${MASTER_ADDR:-}" ] && [ -n "${MASTER_PORT:-}" ] ||
  die "multi-node (NNODES=$NNODES${HOSTFILE:+, HOSTFILE=$HOSTFILE}) needs MASTER_ADDR and MASTER_PORT (node 0's address and a free port)"
case "$MASTER_PORT" in *[!0-9]*) die "MASTER_PORT must be a port number (got '$MASTER_PORT')" ;; esac
if [ -n "${NODE_RANK:-}" ]; then
  case "$NODE_RANK" in *[!0-9]*) die "NODE_RANK must be 0..NNODES-1 (got '$NODE_RANK')" ;; esac
  [ "$NODE_RANK" -lt "$NNODES" ] || [ -n "$HOSTFILE" ] || die "NODE_RANK must be 0..$((NNODES - 1)) (got '$NODE_RANK')"
fi
if [ "$LAUNCHER" = torchrun ]; then
  [ -z "$HOSTFILE" ] || die "HOSTFILE is for LAUNCHER=deepspeed; with torchrun run this script on every node with NODE_RANK"
  [ -n "${NODE_RANK:-}" ] || die "LAUNCHER=torchrun with NNODES=$NNODES needs NODE_RANK (0..$((NNODES - 1))) on each node"
  exec $PY -m llava_train.torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" \
    --master_port "$MASTER_PORT" --nproc_per_node "$NPROC" -m llava_train.train "$@"
fi
# deepspeed's multi-node launch reads the node list from a hostfile, also in its --no_ssh mode.
[ -n "$HOSTFILE" ] || die "deepspeed multi-node needs HOSTFILE (MPI-style 'host slots=N' lines); or use LAUNCHER=torchrun"
[ -f "$HOSTFILE" ] || die "HOSTFILE '$HOSTFILE' is not a file"  # deepspeed would quietly run on this node alone
DS=(--hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")
[ "$NNODES" -eq 1 ] || DS+=(--num_nodes "$NNODES")
[ -z "$NPROC_SET" ] || DS+=(--num_gpus "$NPROC")
[ -z "${NODE_RANK:-}" ] || DS+=(--no_ssh --node_rank "$NODE_RANK")
exec $PY -m deepspeed.launcher.runner "${DS[@]}" --module llava_train.train "$@"
