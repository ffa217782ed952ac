#!/usr/bin/env bash
# Sets up (idempotent) and runs the whole test suite with CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
ctest --test-dir "${QNAS_BUILD_DIR:-build}" --output-on-failure -j"$(nproc)" --timeout 600
