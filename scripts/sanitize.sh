#!/usr/bin/env bash
# The AddressSanitizer + UBSan job: builds into build-asan and runs the tests there.
#   scripts/sanitize.sh         the libraries that need neither LibTorch nor oneDNN, and their tests: the file parsers
#                               (IDX, CIFAR-10, image folders, block and latency LUTs, configs, checkpoint metadata,
#                               run state), space and search arithmetic, and the CLI cases that need no training or
#                               engine. CI runs this (about 12 minutes on 2 cores: build 10, tests 2); LeakSanitizer
#                               is on.
#   scripts/sanitize.sh --all   everything: the oneDNN engine, export and the LibTorch training tests included (hours
#                               of CPU on 2 cores; LibTorch's own allocations trip LeakSanitizer at exit, so it is off)
set -euo pipefail
cd "$(dirname "$0")/.."
export QNAS_SANITIZE=1 UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if [[ ${1:-} == --all ]]; then
  export QNAS_BUILD_DIR=${QNAS_BUILD_DIR:-build-asan-all} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
else
  export QNAS_BUILD_DIR=${QNAS_BUILD_DIR:-build-asan} ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  export QNAS_CMAKE_ARGS="-DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON -DCMAKE_DISABLE_FIND_PACKAGE_dnnl=ON -DQNAS_BUILD_BENCH=OFF"
fi
scripts/test.sh
