#!/usr/bin/env bash
# Kill `qnas mixed-precision --method autoq` with SIGKILL after its third logged episode, run the same command
# again: it must resume from the episode log (replaying, not re-evaluating, those episodes) and end with the
# very episode log an uninterrupted run writes.   mixed_precision_kill.sh QNAS SMOKE_RUN OUT
set -uo pipefail
qnas=$1 smoke=$2 out=$3
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "skipped: dataset-fashion-mnist is not installed"; exit 77; }
rm -rf "$out"
mkdir -p "$out"
autoq() {
  "$qnas" mixed-precision --run-dir "$smoke" --method autoq --size-ratio 0.2 --autoq-episodes 8 --autoq-warmup 3 \
    --reward-images 300 --bn-batches 1 --finetune-epochs 0 --test-images 50 --runs 5 --torch-threads 1 --out "$1"
}
autoq "$out/whole" >"$out/whole.log" 2>&1 || { echo "FAIL: the uninterrupted run failed"; cat "$out/whole.log"; exit 1; }

autoq "$out/killed" >"$out/first.log" 2>&1 &
job=$!
log=$out/killed/autoq-episodes.json
for _ in $(seq 1200); do
  grep -q '"episode": 2' "$log" 2>/dev/null && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.05
done
if ! kill -9 "$job" 2>/dev/null; then
  echo "FAIL: the run ended before three episodes were logged and it could be killed"
  cat "$out/first.log"
  exit 1
fi
wait "$job" 2>/dev/null
[[ -f $out/killed/result.json ]] && { echo "FAIL: the killed run wrote its result"; exit 1; }
logged=$(grep -c '"episode":' "$log")
echo "killed after $logged logged episodes"

autoq "$out/killed" >"$out/second.log" 2>&1 || { echo "FAIL: the resumed run failed"; cat "$out/second.log"; exit 1; }
grep -q "AutoQ: resumed after [3-7] of 8 episodes" "$out/second.log" ||
  { echo "FAIL: did not resume from the log"; cat "$out/second.log"; exit 1; }
grep -h "AutoQ: resumed" "$out/second.log"
cmp "$out/whole/autoq-episodes.json" "$log" ||
  { echo "FAIL: the resumed search differs from the uninterrupted one"; exit 1; }
echo "resumed; the episode log equals the uninterrupted run's"
