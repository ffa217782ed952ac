#!/usr/bin/env bash
# A read-only run directory and a full disk, with real mounts in a private mount namespace:
#   read_only_and_full_disk.sh QNAS SMOKE_RUN TRAIN_CONFIG OUT
# 1. `qnas train` on a finished run mounted read-only: one clear error before any training, a non-zero exit;
# 2. `qnas eval` of that run still evaluates and says its results were not saved;
# 3. `qnas train` on a run in a full file system: one clear error naming the disk and its free space;
# and every file of both run directories is byte for byte what it was.
set -uo pipefail
qnas=$1 smoke=$2 config=$3 out=$4
[[ -d /usr/share/datasets/fashion-mnist ]] || { echo "skipped: dataset-fashion-mnist is not installed"; exit 77; }
unshare -m true 2>/dev/null || { echo "skipped: no private mount namespace here (needs root)"; exit 77; }
rm -rf "$out"
mkdir -p "$out/ro" "$out/small"
cp -r "$smoke" "$out/ro/run"
checksums() { (cd "$1" && find . -type f -exec sha256sum {} + | sort); }
checksums "$out/ro/run" >"$out/before.sha"
train="'$qnas' train --epochs 1 --qat-epochs 1 --threads 1 --config '$config'"
read_only="mount --bind '$out/ro/run' '$out/ro/run' && mount -o remount,bind,ro '$out/ro/run'"
expect() {  # expect LOG PATTERN WHAT
  grep -qE -- "$2" "$1" || { echo "FAIL: $3: '$2' not in the output:"; cat "$1"; exit 1; }
}

unshare -m bash -c "$read_only && $train --run-dir '$out/ro/run'" >"$out/train-ro.log" 2>&1
[[ $? -eq 1 ]] || { echo "FAIL: training into a read-only run directory did not exit 1"; cat "$out/train-ro.log"; exit 1; }
expect "$out/train-ro.log" "is on a read-only file system" "train, read-only"
expect "$out/train-ro.log" "--run-dir must name a writable directory" "train, read-only"
[[ $(grep -c "qnas: error" "$out/train-ro.log") -eq 1 ]] || { echo "FAIL: not exactly one error"; exit 1; }
expect "$out/train-ro.log" "^qnas: error" "train, read-only"
! grep -q "img/s" "$out/train-ro.log" || { echo "FAIL: it trained before refusing"; cat "$out/train-ro.log"; exit 1; }
echo "read-only, train: $(grep 'qnas: error' "$out/train-ro.log")"

unshare -m bash -c "$read_only && '$qnas' eval --run-dir '$out/ro/run' --engine fakequant --limit 50" \
  >"$out/eval-ro.log" 2>&1 || { echo "FAIL: eval of a read-only run failed"; cat "$out/eval-ro.log"; exit 1; }
expect "$out/eval-ro.log" "\| fakequant \| [0-9.]+%" "eval, read-only"
expect "$out/eval-ro.log" "results not saved: .*read-only file system" "eval, read-only"
echo "read-only, eval: evaluated, not saved"
checksums "$out/ro/run" | cmp -s - "$out/before.sha" || { echo "FAIL: the read-only run changed"; exit 1; }

# A 64 MiB file system holding a copy of the run, then filled to the last block.
unshare -m bash -c "
  mount -t tmpfs -o size=64m tmpfs '$out/small' && cp -r '$smoke' '$out/small/run' &&
  (cd '$out/small/run' && find . -type f -exec sha256sum {} + | sort) >'$out/small-before.sha' &&
  { dd if=/dev/zero of='$out/small/fill' bs=1M status=none 2>/dev/null; true; } &&
  { $train --run-dir '$out/small/run' >'$out/train-full.log' 2>&1; echo \$? >'$out/train-full.rc'; } &&
  (cd '$out/small/run' && find . -type f -exec sha256sum {} + | sort) | cmp -s - '$out/small-before.sha' &&
  echo same >'$out/small-after'"
[[ $(cat "$out/train-full.rc" 2>/dev/null) == 1 ]] ||
  { echo "FAIL: training on a full disk did not exit 1"; cat "$out/train-full.log"; exit 1; }
expect "$out/train-full.log" "the disk is full \([0-9.]+ [KMG]?i?B free on $out/small" "train, full disk"
[[ -f $out/small-after ]] || { echo "FAIL: the run on the full disk changed or left files behind"; exit 1; }
echo "full disk, train: $(grep 'qnas: error' "$out/train-full.log")"
echo "read-only and full disk: clear errors, nothing lost"
