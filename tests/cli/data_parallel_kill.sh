#!/usr/bin/env bash
# Kill one rank of a 2-rank `qnas train` after its first checkpoint: the job must stop with an error naming
# the failed collective within the timeout (no hang), and the same command again must resume from that
# checkpoint and finish.   data_parallel_kill.sh QNAS LAUNCH CONFIG RUN_DIR
set -uo pipefail
qnas=$1 launch=$2 config=$3 run_dir=$4
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "skipped: dataset-fashion-mnist is not installed"; exit 77; }
rm -rf "$run_dir"
mkdir -p "$run_dir"
export QNAS_DIST_TIMEOUT=20
train=("$launch" 2 "$qnas" train --epochs 3 --qat-epochs 0 --threads 1 --config "$config" --run-dir "$run_dir")

"${train[@]}" >"$run_dir/first.log" 2>&1 &
job=$!
for _ in $(seq 600); do
  [[ -f $run_dir/checkpoint.pt ]] && break
  sleep 0.1
done
[[ -f $run_dir/checkpoint.pt ]] || { echo "FAIL: no checkpoint after 60 s"; cat "$run_dir/first.log"; exit 1; }
# Rank 1 is the qnas process whose environment says RANK=1.
victim=
for pid in $(pgrep -f -- "--run-dir $run_dir"); do
  if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx 'RANK=1'; then victim=$pid; fi
done
[[ -n $victim ]] || { echo "FAIL: rank 1 not found"; exit 1; }
kill -9 "$victim"
start=$SECONDS
wait "$job"
status=$?
elapsed=$((SECONDS - start))
if ((status == 0)); then echo "FAIL: the job survived the loss of a rank"; cat "$run_dir/first.log"; exit 1; fi
if ((elapsed > 60)); then echo "FAIL: the job took ${elapsed}s to stop"; exit 1; fi
grep -q "a rank failed" "$run_dir/first.log" || { echo "FAIL: no failure line"; cat "$run_dir/first.log"; exit 1; }
echo "stopped ${elapsed}s after the kill (exit $status)"

"${train[@]}" >"$run_dir/second.log" 2>&1 || { echo "FAIL: the resumed job failed"; cat "$run_dir/second.log"; exit 1; }
grep -q "resuming .* from epoch [12] of 3" "$run_dir/second.log" || { echo "FAIL: did not resume"; cat "$run_dir/second.log"; exit 1; }
[[ -f $run_dir/results.json ]] || { echo "FAIL: no results.json"; exit 1; }
grep -h "resuming" "$run_dir/second.log"
echo "resumed and finished"
