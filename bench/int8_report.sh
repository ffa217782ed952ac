#!/usr/bin/env bash
# Produces every number in docs/int8-latency.md. Run on an otherwise idle machine: the latency of a
# 2-core VM drifts by several percent whenever anything else runs (see the report).
#   bench/int8_report.sh [out_dir]     (about an hour on 2 cores; ONLY=subnets skips the tables)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/int8-report}
mkdir -p "$out"
qnas=build/qnas
only=${ONLY:-all}   # ONLY=subnets skips the op/model/ORT tables
if [[ $only == all ]]; then
$qnas profile ops --threads 1 --out "$out/ops"
$qnas profile models --threads 1 --out "$out/models-t1"
$qnas profile models --threads 2 --out "$out/models-t2"
$qnas profile ort --threads 1 --out "$out/ort"
fi
$qnas profile subnets --space spaceevo@vnni --count 300 --calibration 40 --seed 0 \
  --lut "$out/lut-spaceevo-vnni-int8-t1.json" --out "$out/subnets-onnxw"
$qnas profile subnets --space fmnistw-151122-000000 --count 200 --calibration 40 --seed 0 \
  --lut "$out/lut-fmnistw-int8-t1.json" --out "$out/subnets-fmnistw"
# The same validation with the minimum of the timed runs as the statistic (steadier on a drifting VM).
$qnas profile subnets --space spaceevo@vnni --count 200 --calibration 40 --seed 0 --statistic min \
  --lut "$out/lut-spaceevo-vnni-int8-t1-min.json" --out "$out/subnets-onnxw-min"
$qnas profile subnets --space fmnistw-151122-000000 --count 200 --calibration 40 --seed 0 --statistic min \
  --lut "$out/lut-fmnistw-int8-t1-min.json" --out "$out/subnets-fmnistw-min"
