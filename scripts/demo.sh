#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The main job on the embedded default, end to end on the CPU: make a tiny random Qwen3-shaped
# model (with the real Qwen3 tokenizer, kept in tests/data/tokenizers), compress it to DF11, verify it bit for
# bit, shard it for tensor parallel 2 x pipeline parallel 2, and generate a JSONL batch with
# four MPI ranks. Work files go to ${DEMO_DIR:-/tmp/df11-demo}.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
DEMO_DIR=${DEMO_DIR:-/tmp/df11-demo}

bash scripts/install-deps.sh
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo > /dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target df11 df11-run
DF11="$BUILD_DIR/launcher/df11"
RUN="$BUILD_DIR/launcher/df11-run"

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
echo "== make a tiny random model (Qwen3 architecture, real tokenizer)"
"$DF11" -q make-tiny --arch qwen3 --layers 4 --hidden 128 --heads 4 --kv-heads 2 --head-dim 32 \
  --intermediate 384 --vocab-from "$BUILD_DIR/data/tokenizers/qwen3" --seed 1 "$DEMO_DIR/bf16"
echo "== compress to DF11"
"$DF11" -q compress "$DEMO_DIR/bf16" "$DEMO_DIR/df11"
echo "== verify: every weight bit-identical"
"$DF11" -q verify "$DEMO_DIR/df11" "$DEMO_DIR/bf16"
echo "== inspect"
"$DF11" inspect "$DEMO_DIR/df11"
echo "== shard: tensor parallel 2 x pipeline parallel 2"
"$DF11" -q shard "$DEMO_DIR/df11" "$DEMO_DIR/tp2pp2" --tp 2 --pp 2
echo "== generate with mpirun -np 4 (each rank holds only its own compressed shard)"
MPI_FLAGS=(--oversubscribe -np 4)
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mpirun "${MPI_FLAGS[@]}" "$RUN" generate --model "$DEMO_DIR/tp2pp2" --threads 1 \
  --input configs/demo-batch.jsonl --output "$DEMO_DIR/results.jsonl"
echo "== results ($DEMO_DIR/results.jsonl)"
cat "$DEMO_DIR/results.jsonl"
echo "== the same batch on one process gives the same greedy tokens:"
"$RUN" generate --model "$DEMO_DIR/df11" --threads 2 --input configs/demo-batch.jsonl \
  --output "$DEMO_DIR/results-single.jsonl" 2> /dev/null
# (lines come in the order requests finish, so compare them sorted)
if cmp -s <(sort "$DEMO_DIR/results.jsonl") <(sort "$DEMO_DIR/results-single.jsonl"); then
  echo "identical"
else
  echo "DIFFERENT (see $DEMO_DIR/results-single.jsonl)" && exit 1
fi
