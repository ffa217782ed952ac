#!/usr/bin/env bash
# qnas run on data the test makes: an image folder (random 8x8 PPM images in 3 classes; the whole tiny pipeline,
# every artifact checked) and CIFAR-10 binaries (random records; through the teacher stage). The images are
# noise, so accuracy is not checked: that every stage runs on each source and writes what it promises is.
# Usage: run_data_dirs.sh QNAS SCRATCH
# One thread per run: CTest runs another case beside this one on a 2-core machine.
set -euo pipefail
qnas=$1 scratch=$2
rm -rf "$scratch"
mkdir -p "$scratch"
cache=$scratch/cache

ppm() {  # ppm FILE SEED: an 8x8 P6 image of noise
  { printf 'P6\n8 8\n255\n'; head -c 192 /dev/urandom; } >"$1"
}
for class in circle square triangle; do
  mkdir -p "$scratch/folder/$class"
  for i in $(seq 1 40); do ppm "$scratch/folder/$class/$i.ppm"; done
done
"$qnas" run --data "$scratch/folder" --preset tiny --threads 1 --run-dir "$scratch/run-folder" --cache-dir "$cache"
for f in report.md report.html report-front.svg summary.json pipeline.json; do
  test -s "$scratch/run-folder/$f" || { echo "FAIL: image folder run wrote no $f"; exit 1; }
done
grep -q '"kind": "image-folder"' "$scratch/run-folder/pipeline.json" || { echo "FAIL: not read as an image folder"; exit 1; }
grep -q 'cifarw-' "$scratch/run-folder/report.md" || { echo "FAIL: the folder's space is not a cifarw space"; exit 1; }
ls "$scratch"/run-folder/finish/limit-*/model-int8.onnx >/dev/null || { echo "FAIL: no exported model"; exit 1; }

record() {  # record LABEL: one CIFAR-10 record of noise
  printf "\\x0$1"
  head -c 3072 /dev/urandom
}
mkdir -p "$scratch/cifar"
for b in 1 2 3 4 5 test; do
  file=$scratch/cifar/data_batch_$b.bin
  [[ $b == test ]] && file=$scratch/cifar/test_batch.bin
  for i in $(seq 0 39); do record $((i % 10)); done >"$file"
done
"$qnas" run --data "$scratch/cifar" --preset tiny --threads 1 --until teacher --run-dir "$scratch/run-cifar" --cache-dir "$cache"
grep -q '"kind": "cifar10"' "$scratch/run-cifar/pipeline.json" || { echo "FAIL: not read as CIFAR-10"; exit 1; }
test -s "$scratch/run-cifar/teacher/checkpoint.pt" || { echo "FAIL: no CIFAR-10 teacher"; exit 1; }
# A changed setting reruns its stage and says why; the stages before it are kept.
echo '{"teacher": {"lr": 0.02}}' >"$scratch/teacher-lr.json"
out=$("$qnas" run --data "$scratch/cifar" --preset tiny --threads 1 --until teacher --run-dir "$scratch/run-cifar" --cache-dir "$cache" \
  --config "$scratch/teacher-lr.json" 2>&1)
echo "$out" | grep -q 'stage 2/13 latency: done earlier' || { echo "FAIL: the latency stage was not kept"; echo "$out"; exit 1; }
echo "$out" | grep -q 'teacher: settings changed (teacher.lr: 0.05 -> 0.02)' || { echo "FAIL: no reason given"; echo "$out"; exit 1; }
echo PASS
