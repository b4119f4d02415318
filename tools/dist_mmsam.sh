#!/usr/bin/env bash
# Run an mmsam folder job (amg, annotate, embed) on GPUS processes of this machine (or of
# NNODES machines) with torchrun; each process takes a disjoint share of the images:
#   bash tools/dist_mmsam.sh COMMAND GPUS [mmsam COMMAND arguments...]
#   bash tools/dist_mmsam.sh embed 8 data/images --out work_dirs/embeddings --batch-size 4
# Rerunning the same command resumes after an interrupted or failed process.
# Without CUDA the processes run on the CPU with the gloo backend.
# Environment: NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON (default: python).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: bash $0 {amg,annotate,embed} GPUS [mmsam arguments...]" >&2
    exit 2
fi
COMMAND=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
PYTHON=${PYTHON:-python}
TOOLS="$(cd "$(dirname "$0")" && pwd)"

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    -m mmsam.cli "$COMMAND" "${@:3}" --launcher pytorch
