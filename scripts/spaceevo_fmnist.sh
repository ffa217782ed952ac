#!/usr/bin/env bash
# SpaceEvo end to end on Fashion-MNIST with this CPU's INT8 latency, as docs/spaceevo-fmnist.md ran it:
#   teacher -> block KD (WORKERS processes sharing one run directory) -> block LUTs -> space search
#   -> five spaces (best, worst, three between) trained with one budget -> Kendall tau.
# Every step resumes: run the script again after a kill and finished work is kept.
# Environment: QNAS (binary, default build/qnas), RUN (default runs/spaceevo-fmnist), WORKERS (2),
# LIMITS (latency limits in ms, default "0.2 0.3 0.45"), KD_PRESET (tiny), SPACE_CONFIG (JSON for the five
# supernets, default {"train_limit":2048}), EVALUATIONS (space-search evaluations, default 5000).
set -euo pipefail
QNAS=${QNAS:-build/qnas}
RUN=${RUN:-runs/spaceevo-fmnist}
WORKERS=${WORKERS:-2}
LIMITS=${LIMITS:-0.2 0.3 0.45}
KD_PRESET=${KD_PRESET:-tiny}
SPACE_CONFIG=${SPACE_CONFIG:-'{"train_limit":2048}'}
EVALUATIONS=${EVALUATIONS:-5000}
# The teacher: ResNet bottlenecks (dense 3x3 convs train fast on a CPU) at the widest fmnistw windows, depth 2.
TEACHER_SPACE=fmnistw-333333-234442
TEACHER_SUBNET='d1#1#2#2#2#2#2#1_k3#3#3#3#3#3#3#3#3#3#3#3#3_w24#24#48#48#64#64#96#96#112#112#160#160#192_e0#0.5#1.0#1.0#1.0#1.0#1.0#1.0#1.0#1.0#1.0#1.0#1.0_r28'
mkdir -p "$RUN"
read -r -a limits <<<"$LIMITS"

echo '{"epochs":8,"qat_epochs":1}' >"$RUN/teacher.json"
"$QNAS" train --preset fmnist --config "$RUN/teacher.json" --space $TEACHER_SPACE --subnet "$TEACHER_SUBNET" \
  --run-dir "$RUN/teacher"

for ((w = 0; w < WORKERS; ++w)); do
  "$QNAS" block-kd --teacher "$RUN/teacher" --preset "$KD_PRESET" --threads 1 --run-dir "$RUN/block-kd" \
    >"$RUN/block-kd-worker$w.log" 2>&1 &
done
wait
"$QNAS" block-kd --teacher "$RUN/teacher" --preset "$KD_PRESET" --run-dir "$RUN/block-kd"  # all done: a summary

"$QNAS" build-lut --run-dir "$RUN/block-kd" --latency-lut "$RUN/latency-lut-fmnistw-int8-t1.json"
"$QNAS" space-search --lut "$RUN/block-kd/lut" --hyperspace fmnistw --latency "${limits[@]}" \
  --evaluations "$EVALUATIONS" --out "$RUN/space-search"

# Best, worst and three evenly spaced between, by Q-T score over every space the search evaluated.
mapfile -t ranked < <(tail -n +2 "$RUN/space-search/history.csv" | sort -t, -k3,3 -g -r | cut -d, -f2 | awk '!seen[$0]++')
n=${#ranked[@]}
picks=("${ranked[0]}" "${ranked[$((n / 4))]}" "${ranked[$((n / 2))]}" "${ranked[$((3 * n / 4))]}" "${ranked[$((n - 1))]}")
echo "$SPACE_CONFIG" >"$RUN/space-config.json"
runs=()
for space in "${picks[@]}"; do
  "$QNAS" train --space "$space" --preset tiny --config "$RUN/space-config.json" --limits "${limits[@]}" \
    --latency-lut "$RUN/latency-lut-fmnistw-int8-t1.json" --run-dir "$RUN/spaces/$space"
  runs+=("$RUN/spaces/$space")
done
"$QNAS" space-search --lut "$RUN/block-kd/lut" --hyperspace fmnistw --latency "${limits[@]}" --rank-runs "${runs[@]}" \
  | tee "$RUN/kendall.txt"
