#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the dependencies, builds everything (CUDA sources too when nvcc is found), runs a
# short libFuzzer session on each fuzz target, then the whole test suite with ctest.
# Environment: BUILD_DIR (default build), JOBS (default nproc), FUZZ_SECONDS (default 20; 0 skips).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}

bash scripts/install-deps.sh

cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDF11_BUILD_TESTS=ON \
  -DDF11_BUILD_BENCHMARKS=ON
cmake --build "$BUILD_DIR" -j "$JOBS"

if [ "$FUZZ_SECONDS" != "0" ]; then
  bash scripts/fuzz.sh "$FUZZ_SECONDS"
fi

ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 900
