#!/usr/bin/env bash
# Train on GPUS processes of this machine (or of NNODES machines) with torchrun:
#   bash tools/dist_train.sh CONFIG GPUS [tools/train.py options...]
# Without CUDA the processes run on the CPU with the gloo backend.
# Environment: NNODES, NODE_RANK, PORT, MASTER_ADDR, PYTHON (default: python).
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: bash $0 CONFIG GPUS [tools/train.py options...]" >&2
    exit 2
fi
CONFIG=$1
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
    "$TOOLS/train.py" "$CONFIG" --launcher pytorch "${@:3}"
