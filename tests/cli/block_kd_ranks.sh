#!/usr/bin/env bash
# Two ranks of `qnas block-kd` on 127.0.0.1, each with its own run directory (no shared file system): they
# claim disjoint blocks through rank 0's store, and rank 0's directory ends with every block, byte for byte
# the weights one process trains. A rank that hangs while it holds a block stops rank 0 with an error naming
# it, and the same command then trains only the blocks that are missing.
#   block_kd_ranks.sh QNAS LAUNCH TRAIN_CONFIG DIR
set -uo pipefail
qnas=$1 launch=$2 train_config=$3 dir=$4
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "skipped: dataset-fashion-mnist is not installed"; exit 77; }
rm -rf "$dir"
mkdir -p "$dir"
cd "$dir" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

subnet=$("$qnas" space sample --space fmnistw-000000-000000 --count 1 --seed 1 | awk '{print $1}' | sed 's/_r[0-9]*$/_r28/')
"$qnas" train --space fmnistw-000000-000000 --subnet "$subnet" --epochs 1 --qat-epochs 0 --threads 1 \
  --config "$train_config" --run-dir teacher >teacher.log 2>&1 || { cat teacher.log; fail "teacher"; }
# stale_seconds is not a training setting: every run below trains the same blocks.
echo '{"train_limit": 256, "heldout": 32, "epochs": 1, "qat_epochs": 1, "stale_seconds": 10}' >kd.json
blocks=(stage1_0_0 stage1_3_0 stage2_0_0 stage2_1_1 stage3_2_1 stage4_0_0)
kd=("$qnas" block-kd --teacher teacher --config kd.json --blocks "${blocks[@]}" --threads 1)
# Each rank its own directory, as on machines that share none.
ranked=(bash -c 'exec "$@" --run-dir "ranks/rank$RANK"' kd "${kd[@]}")

"${kd[@]}" --run-dir single >single.log 2>&1 || { cat single.log; fail "one process"; }
export QNAS_DIST_TIMEOUT=30
"$launch" 2 "${ranked[@]}" >ranks.log 2>&1 || { cat ranks.log; fail "two ranks"; }
count() { find "$1" -name '*.json' 2>/dev/null | wc -l; }
(($(count ranks/rank0/blocks) == 6)) || fail "rank 0 holds $(count ranks/rank0/blocks) of 6 blocks"
trained_by_1=$(count ranks/rank1/blocks)
((trained_by_1 >= 1 && trained_by_1 < 6)) || fail "rank 1 trained $trained_by_1 blocks"
for b in "${blocks[@]}"; do
  cmp -s "single/blocks/$b.pt" "ranks/rank0/blocks/$b.pt" || fail "$b differs from the one-process weights"
done
echo "two ranks: rank 1 trained $trained_by_1 of 6 blocks; rank 0 holds all 6, identical to one process's"

# Rank 1 hangs (SIGSTOP) just after its first block, holding its second.
rm -rf ranks
port=$((20000 + RANDOM % 20000))
WORLD_SIZE=2 RANK=0 MASTER_PORT=$port "${ranked[@]}" >hang0.log 2>&1 &
rank0=$!
WORLD_SIZE=2 RANK=1 MASTER_PORT=$port "${ranked[@]}" >hang1.log 2>&1 &
rank1=$!
for _ in $(seq 1200); do
  grep -q "rank 1 trained" hang1.log && break
  sleep 0.1
done
grep -q "rank 1 trained" hang1.log || { kill -9 $rank0 $rank1; cat hang0.log hang1.log; fail "rank 1 trained nothing in 120 s"; }
sleep 0.5
kill -STOP $rank1
start=$SECONDS
wait $rank0
status=$?
elapsed=$((SECONDS - start))
kill -9 $rank1
wait $rank1 2>/dev/null
((status != 0)) || { cat hang0.log; fail "rank 0 finished without the blocks of the hung rank"; }
((elapsed < 90)) || fail "rank 0 took ${elapsed}s to stop"
grep -q "rank 1 holds block .* but sent no heartbeat for" hang0.log || { cat hang0.log; fail "no error naming rank 1"; }
grep -h "holds block" hang0.log
echo "rank 0 stopped ${elapsed}s after rank 1 hung (exit $status)"

"$launch" 2 "${ranked[@]}" >resume.log 2>&1 || { cat resume.log; fail "the resumed job failed"; }
left=$(sed -n 's/.*rank 0 of 2, \([0-9]*\) of 6 blocks left.*/\1/p' resume.log)
[[ -n $left ]] && ((left >= 1 && left < 6)) || { cat resume.log; fail "resumed with '$left' blocks left"; }
(($(count ranks/rank0/blocks) == 6)) || fail "after resuming rank 0 holds $(count ranks/rank0/blocks) of 6 blocks"
for b in "${blocks[@]}"; do
  cmp -s "single/blocks/$b.pt" "ranks/rank0/blocks/$b.pt" || fail "$b differs from the one-process weights after resuming"
done
echo "resumed with $left of 6 blocks left; all 6 identical to one process's"
