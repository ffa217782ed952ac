#!/usr/bin/env bash
# The AddressSanitizer + UBSan job: builds into build-asan and runs the tests there.
#   scripts/sanitize.sh         every library without LibTorch and its tests: the file parsers (IDX, CIFAR-10, image
#                               folders, LUTs, configs, checkpoint metadata), space and search arithmetic, the
#                               oneDNN INT8 engine, ONNX export, and the CLI cases that need no training. CI runs
#                               this (minutes on 2 cores); LeakSanitizer is on.
#   scripts/sanitize.sh --all   everything, the LibTorch training tests included (hours of CPU on 2 cores;
#                               LibTorch's own allocations trip LeakSanitizer at exit, so it is off there)
set -euo pipefail
cd "$(dirname "$0")/.."
export QNAS_SANITIZE=1 UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [[ ${1:-} == --all ]]; then
  export QNAS_BUILD_DIR=${QNAS_BUILD_DIR:-build-asan-all} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
else
  export QNAS_BUILD_DIR=${QNAS_BUILD_DIR:-build-asan} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  export QNAS_CMAKE_ARGS="-DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON -DQNAS_BUILD_BENCH=OFF"
fi
scripts/test.sh
