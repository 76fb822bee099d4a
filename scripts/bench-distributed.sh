#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# CPU benchmark of the distributed runtime on a ~100 M-parameter random Llama (Llama 3.1
# tokenizer, tied embeddings): make-tiny, compress to DF11, shard tp1 / tp2 / pp2 (timing each and
# its peak RSS), then generate the same greedy batch with one process, mpirun -np 1 (tp1 shard),
# -np 2 tp2 and -np 2 pp2, one thread per rank. Prints prefill/decode tokens/s, the ratio to
# one process, and the bytes each layout communicates per token (computed from the layout).
# Usage: scripts/bench-distributed.sh [BUILD_DIR]   (env: BENCH_DIR, PROMPTS, TOKENS)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-${BUILD_DIR:-build}}
BENCH_DIR=${BENCH_DIR:-/tmp/df11-bench-distributed}
PROMPTS=${PROMPTS:-8}
TOKENS=${TOKENS:-32}
DF11="$BUILD_DIR/launcher/df11"
RUN="$BUILD_DIR/launcher/df11-run"
TOKENIZER=${TOKENIZER:-$BUILD_DIR/data/tokenizers/llama-3.1}
# Model: hidden 512, 8 layers, 8 heads (4 kv), intermediate 2048, vocab 128256 (tied):
# 65.7 M embedding + 8 x 3.9 M layers = 97.2 M parameters.
LAYERS=8 HIDDEN=512 HEADS=8 KV_HEADS=4 INTERMEDIATE=2048
for bin in "$DF11" "$RUN"; do
  [ -x "$bin" ] || { echo "missing $bin: cmake --build $BUILD_DIR --target df11 df11-run" >&2; exit 2; }
done
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
MPIRUN=(mpirun --oversubscribe --bind-to none)

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
echo "== model: llama, $LAYERS layers, hidden $HIDDEN, heads $HEADS/$KV_HEADS, intermediate" \
  "$INTERMEDIATE, tied embeddings, tokenizer $(basename "$TOKENIZER")"
"$DF11" -q make-tiny --layers $LAYERS --hidden $HIDDEN --heads $HEADS --kv-heads $KV_HEADS \
  --intermediate $INTERMEDIATE --tie-embeddings --vocab-from "$TOKENIZER" --seed 1 "$BENCH_DIR/bf16"
start=$(date +%s.%N)
"$DF11" -q compress "$BENCH_DIR/bf16" "$BENCH_DIR/df11"
echo "compress: $(echo "$(date +%s.%N) - $start" | bc) s"
size_mb() { du -sb "$1" | awk '{printf "%.1f", $1 / 1e6}'; }
VOCAB=$(python3 -c "import json;print(json.load(open('$BENCH_DIR/bf16/config.json'))['vocab_size'])")
PARAMS=$(( VOCAB * HIDDEN + LAYERS * (2 * HIDDEN * HIDDEN + 2 * HIDDEN * HIDDEN * KV_HEADS / HEADS \
  + 3 * HIDDEN * INTERMEDIATE + 2 * HIDDEN) + HIDDEN ))
echo "parameters: $PARAMS; BF16 $(size_mb "$BENCH_DIR/bf16") MB, DF11 $(size_mb "$BENCH_DIR/df11") MB"

echo
echo "== df11 shard (DF11 source, $(size_mb "$BENCH_DIR/df11") MB)"
printf "%-8s %10s %14s %14s\n" layout "time s" "peak RSS MB" "output MB"
for layout in "1 1" "2 1" "1 2"; do
  set -- $layout
  name="tp$1pp$2"
  /usr/bin/time -v "$DF11" -q shard "$BENCH_DIR/df11" "$BENCH_DIR/$name" --tp "$1" --pp "$2" \
    2> "$BENCH_DIR/shard-$name.time"
  secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0;
    for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$BENCH_DIR/shard-$name.time")
  rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1e3}' "$BENCH_DIR/shard-$name.time")
  printf "%-8s %10s %14s %14s\n" "$name" "$secs" "$rss" "$(size_mb "$BENCH_DIR/$name")"
done

# The batch: PROMPTS different prompts, TOKENS new tokens each, greedy.
for i in $(seq 1 "$PROMPTS"); do
  echo "{\"custom_id\": \"p$i\", \"prompt\": \"Benchmark prompt number $i: tell me about the weather in city $i.\", \"max_tokens\": $TOKENS}"
done > "$BENCH_DIR/batch.jsonl"

GEN=(generate --input "$BENCH_DIR/batch.jsonl" --threads 1 --batch-size "$PROMPTS" -n "$TOKENS")
# run NAME TP PP NP CMD...: runs, keeps stderr, records "name tp pp prefill_tps decode_tps".
: > "$BENCH_DIR/results.txt"
run() {
  local name=$1 tp=$2 pp=$3; shift 3
  local start end
  start=$(date +%s.%N)
  "$@" --output "$BENCH_DIR/out-$name.jsonl" 2> "$BENCH_DIR/run-$name.log"
  end=$(date +%s.%N)
  local line
  line=$(grep -E '^prefill: ' "$BENCH_DIR/run-$name.log" | tail -1)
  local pre dec
  pre=$(echo "$line" | sed -E 's/.*prefill: [0-9]+ tokens in [0-9.]+ s \(([0-9.]+) tokens\/s\).*/\1/')
  dec=$(echo "$line" | sed -E 's/.*decode: [0-9]+ tokens in [0-9.]+ s \(([0-9.]+) tokens\/s\).*/\1/')
  echo "$name $tp $pp $pre $dec $(echo "$end - $start" | bc)" >> "$BENCH_DIR/results.txt"
}
run "1-process" 1 1 "$RUN" "${GEN[@]}" --model "$BENCH_DIR/df11"
run "np1-tp1" 1 1 "${MPIRUN[@]}" -np 1 "$RUN" "${GEN[@]}" --model "$BENCH_DIR/tp1pp1"
run "np2-tp2" 2 1 "${MPIRUN[@]}" -np 2 "$RUN" "${GEN[@]}" --model "$BENCH_DIR/tp2pp1"
run "np2-pp2" 1 2 "${MPIRUN[@]}" -np 2 "$RUN" "${GEN[@]}" --model "$BENCH_DIR/tp1pp2"
for name in np1-tp1 np2-tp2 np2-pp2; do
  if ! cmp -s <(sort "$BENCH_DIR/out-1-process.jsonl") <(sort "$BENCH_DIR/out-$name.jsonl"); then
    echo "note: $name output differs from the one-process output (rounding under TP/PP)"
  fi
done

echo
echo "== generate: $PROMPTS prompts x $TOKENS tokens, greedy, batch $PROMPTS, 1 thread per rank, $(nproc) cores"
echo "bytes communicated per token (analytic, FP32 activations, H = $HIDDEN, L = $LAYERS):"
echo "  TP: (2 all-reduces per layer x L/pp + 1 embedding all-reduce) x H x 4 B x 2(tp-1)/tp   [ring, sent per rank]"
echo "  PP: (pp-1) stage boundaries x H x 4 B                                             [point to point]"
echo "  (+ per step: the plan broadcast, 8 B x (3 + 3 x seqs + tokens), and 4 B x seqs of greedy tokens;"
echo "   TP argmax all-gather 8 B x seqs x tp; not counted)"
printf "%-10s %3s %3s %12s %8s %12s %8s %9s %14s\n" run tp pp "prefill t/s" ratio "decode t/s" ratio "wall s" "comm B/token"
read -r _ _ _ base_pre base_dec _ < <(head -1 "$BENCH_DIR/results.txt")
while read -r name tp pp pre dec wall; do
  comm=$(( (2 * LAYERS / pp + 1) * HIDDEN * 4 * 2 * (tp - 1) / tp + (pp - 1) * HIDDEN * 4 ))
  printf "%-10s %3s %3s %12s %8s %12s %8s %9.1f %14s\n" "$name" "$tp" "$pp" "$pre" \
    "$(echo "scale=2; $pre / $base_pre" | bc)" "$dec" "$(echo "scale=2; $dec / $base_dec" | bc)" \
    "$wall" "$comm"
done < "$BENCH_DIR/results.txt"
