#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the libFuzzer targets with clang (ASan + UBSan) in build-fuzz/ and runs each for
# SECONDS (default 20). A long run: scripts/fuzz.sh 3600. Crashing inputs are written to
# build-fuzz/artifacts/ and the script fails.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-20}
FUZZ_DIR=${FUZZ_DIR:-build-fuzz}
cmake -S . -B "$FUZZ_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DDF11_FUZZ=ON -DDF11_CUDA=OFF \
  -DDF11_BUILD_TESTS=OFF -DDF11_BUILD_BENCHMARKS=OFF > /dev/null
TARGETS=(safetensors_fuzz df11_unit_fuzz ew4_fuzz request_fuzz model_config_fuzz tokenizer_fuzz)
cmake --build "$FUZZ_DIR" -j "${JOBS:-$(nproc)}" --target "${TARGETS[@]}"
mkdir -p "$FUZZ_DIR/artifacts"
for t in "${TARGETS[@]}"; do
  corpus="$FUZZ_DIR/corpus-$t"
  mkdir -p "$corpus"
  seeds=()
  if [ -d "tests/fuzz/seeds/$t" ]; then seeds=("tests/fuzz/seeds/$t"); fi
  echo "fuzz: $t for ${SECONDS_PER_TARGET}s"
  if ! "$FUZZ_DIR/tests/fuzz/$t" -max_total_time="$SECONDS_PER_TARGET" \
      -artifact_prefix="$FUZZ_DIR/artifacts/$t-" "$corpus" "${seeds[@]}" > "$FUZZ_DIR/$t.log" 2>&1; then
    tail -n 30 "$FUZZ_DIR/$t.log"
    echo "fuzz: $t FAILED (crashing input in $FUZZ_DIR/artifacts/)"
    exit 1
  fi
  grep -E "^(Done|#[0-9]+ +DONE)" "$FUZZ_DIR/$t.log" | tail -n 1
done
