#!/usr/bin/env bash
# Starts N ranks of a qnas command on this machine, data parallel over c10d Gloo on 127.0.0.1, each with
# OMP_NUM_THREADS=${QNAS_THREADS_PER_RANK:-1}; exits with the first failing rank's status (and stops the
# others), so a killed rank ends the job with its error instead of a hang.
#   scripts/launch-local.sh 2 build/qnas train --space fmnistw-000000-000000 --run-dir runs/dp
# Clusters set the same variables themselves: torchrun --nproc_per_node=N sets RANK/WORLD_SIZE/
# LOCAL_RANK/MASTER_ADDR/MASTER_PORT, and srun sets SLURM_PROCID/SLURM_NTASKS (see the README).
set -euo pipefail
if (($# < 2)) || ! [[ $1 =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/launch-local.sh N COMMAND [ARGS...]   (N ranks, N >= 1)" >&2
  exit 2
fi
ranks=$1
shift
export WORLD_SIZE=$ranks MASTER_ADDR=${MASTER_ADDR:-127.0.0.1} MASTER_PORT=${MASTER_PORT:-$((20000 + RANDOM % 20000))}
export OMP_NUM_THREADS=${QNAS_THREADS_PER_RANK:-1}
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT INT TERM
for ((r = 0; r < ranks; r++)); do
  RANK=$r LOCAL_RANK=$r "$@" &
  pids+=($!)
done
status=0
for _ in "${pids[@]}"; do
  wait -n || {
    status=$?
    echo "launch-local: a rank failed (exit $status); stopping the others" >&2
    break
  }
done
if ((status == 0)); then trap - EXIT; fi
exit "$status"
