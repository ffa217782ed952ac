#!/usr/bin/env bash
# Builds with AddressSanitizer + UBSan into build-asan and runs the whole test suite there.
set -euo pipefail
cd "$(dirname "$0")/.."
export QNAS_BUILD_DIR=build-asan QNAS_SANITIZE=1
# LibTorch's own allocations trip LeakSanitizer at exit; leaks in our code show up under valgrind instead.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
scripts/test.sh
