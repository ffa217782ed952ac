#!/usr/bin/env bash
# `qnas run` under scripts/launch-local.sh with 2 ranks: rank 0 runs the stages, rank 1 joins the training
# stage (the teacher here, --until teacher) and writes nothing else; both end with exit 0. Started again, every
# stage is kept and rank 1 returns when rank 0 says it is done.   run_ranks.sh QNAS LAUNCH DIR
set -uo pipefail
qnas=$1 launch=$2 dir=$3
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "skipped: dataset-fashion-mnist is not installed"; exit 77; }
rm -rf "$dir"
mkdir -p "$dir"
fail() { echo "FAIL: $*"; exit 1; }
export QNAS_DIST_TIMEOUT=60
run=("$launch" 2 "$qnas" run --preset tiny --until teacher --threads 1 --run-dir "$dir/run" --cache-dir "$dir/cache")

"${run[@]}" >"$dir/first.log" 2>&1 || { cat "$dir/first.log"; fail "two ranks"; }
grep -q "rank 1 trains $dir/run/teacher with rank 0" "$dir/first.log" || { cat "$dir/first.log"; fail "rank 1 did not train the teacher"; }
grep -q "rank 1: rank 0 finished; this rank took part in 1 training stages" "$dir/first.log" ||
  { cat "$dir/first.log"; fail "rank 1 did not end with rank 0"; }
[[ -f $dir/run/teacher/checkpoint.pt ]] || fail "no teacher checkpoint"
[[ ! -e $dir/run/ranks ]] || fail "rank 1 wrote into the run directory"
grep -h "epoch 1/1:" "$dir/first.log"

"${run[@]}" >"$dir/second.log" 2>&1 || { cat "$dir/second.log"; fail "the second start"; }
grep -q "stage 3/13 teacher: done earlier" "$dir/second.log" || { cat "$dir/second.log"; fail "the teacher was not kept"; }
grep -q "this rank took part in 0 training stages" "$dir/second.log" || { cat "$dir/second.log"; fail "rank 1 trained again"; }
echo "2 ranks trained the teacher; started again, both kept it"
