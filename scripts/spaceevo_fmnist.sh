#!/usr/bin/env bash
# SpaceEvo end to end on Fashion-MNIST with this CPU's INT8 latency, as docs/spaceevo-fmnist.md ran it:
#   teacher -> block KD (WORKERS processes sharing one run directory) -> block LUTs -> space search
#   -> five spaces (best, worst, three between) trained with one budget -> Kendall tau.
# Every step resumes: run the script again after a kill and finished work is kept.
# Environment: QNAS (binary, default build/qnas), RUN (default runs/spaceevo-fmnist), WORKERS (2),
# LIMITS (latency limits in ms, default "0.25 0.4 0.6"), KD_PRESET (tiny), SPACE_CONFIG (JSON for the five
# supernets, default {"train_limit":1024}), EVALUATIONS (space-search evaluations, default 5000), LUT_ROWS (25)
# and EVAL_IMAGES (96): rows per block LUT and held-out images per row; SUBNET_EVALUATIONS (96): subnets each
# space's subnet search evaluates.
set -euo pipefail
QNAS=${QNAS:-build/qnas}
RUN=${RUN:-runs/spaceevo-fmnist}
WORKERS=${WORKERS:-2}
LIMITS=${LIMITS:-0.25 0.4 0.6}
KD_PRESET=${KD_PRESET:-tiny}
SPACE_CONFIG=${SPACE_CONFIG:-'{"train_limit":1024}'}
LUT_ROWS=${LUT_ROWS:-25}
EVAL_IMAGES=${EVAL_IMAGES:-96}
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

"$QNAS" build-lut --run-dir "$RUN/block-kd" --latency-lut "$RUN/latency-lut-fmnistw-int8-t1.json" \
  --rows "$LUT_ROWS" --eval-images "$EVAL_IMAGES"
"$QNAS" space-search --lut "$RUN/block-kd/lut" --hyperspace fmnistw --latency "${limits[@]}" \
  --evaluations "$EVALUATIONS" --out "$RUN/space-search"

# The best, the worst, and the three spaces whose Q-T scores lie nearest 3/4, 1/2 and 1/4 of the way between,
# among every space the search evaluated (evenly spaced in score, not in rank: evolution crowds the top).
mapfile -t picks < <(tail -n +2 "$RUN/space-search/history.csv" | awk -F, '
  !($2 in score) { score[$2] = $3 + 0 }
  END {
    for (s in score) { if (best == "" || score[s] > score[best]) best = s; if (worst == "" || score[s] < score[worst]) worst = s }
    print best; taken[best] = 1; taken[worst] = 1
    for (k = 3; k >= 1; --k) {
      target = score[worst] + k / 4 * (score[best] - score[worst]); pick = ""
      for (s in score) if (!(s in taken) && (pick == "" || (score[s] - target)^2 < (score[pick] - target)^2)) pick = s
      print pick; taken[pick] = 1
    }
    print worst
  }')
echo "$SPACE_CONFIG" >"$RUN/space-config.json"
runs=()
for space in "${picks[@]}"; do
  "$QNAS" train --space "$space" --preset tiny --config "$RUN/space-config.json" --run-dir "$RUN/spaces/$space"
  # One search budget for every space, so their best subnets under the limits compare fairly.
  "$QNAS" subnet-search --run-dir "$RUN/spaces/$space" --latency-lut "$RUN/latency-lut-fmnistw-int8-asym-t1.json" \
    --limits "${limits[@]}" --algorithm evolution --population 16 --evaluations "${SUBNET_EVALUATIONS:-96}" \
    --heldout-images 1000
  runs+=("$RUN/spaces/$space")
done
"$QNAS" space-search --lut "$RUN/block-kd/lut" --hyperspace fmnistw --latency "${limits[@]}" --rank-runs "${runs[@]}" \
  | tee "$RUN/kendall.txt"
