#!/usr/bin/env bash
# Run an mmsam folder job (amg, annotate, embed) on a slurm cluster, one task per GPU;
# each task takes a disjoint share of the images:
#   bash tools/slurm_mmsam.sh PARTITION JOB_NAME COMMAND [mmsam COMMAND arguments...]
# Rerunning the same command resumes after an interrupted or failed task.
# Environment: GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS, PYTHON (python).
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: bash $0 PARTITION JOB_NAME {amg,annotate,embed} [mmsam arguments...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
COMMAND=$3
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-}
PYTHON=${PYTHON:-python}
TOOLS="$(cd "$(dirname "$0")" && pwd)"

# shellcheck disable=SC2086  # SRUN_ARGS holds several words
PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    --gres=gpu:"$GPUS_PER_NODE" \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u -m mmsam.cli "$COMMAND" "${@:4}" --launcher slurm
