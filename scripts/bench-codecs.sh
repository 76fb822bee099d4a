#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# CPU decode and prefill speed of one model served as BF16, DF11 and ew4, side by side, at batch
# 1 and 8: a random ~0.5 B-parameter Llama (24 layers, hidden 1024, 16 heads / 4 kv, MLP 4096,
# the Llama 3.1 vocabulary, tied embeddings) made as BF16 and compressed to DF11; `df11-run
# bench` runs BF16 as stored, DF11 as stored and ew4 (--weight-codec ew4, transcoded from the
# DF11 files at load), in alternation, ROUNDS times (best kept). Prints a markdown table, the
# ratios to BF16, and the load times (DF11 as stored vs DF11 transcoded to ew4).
#   scripts/bench-codecs.sh [BUILD_DIR] [THREADS]   (env: ROUNDS=2, GEN_TOKENS=16, BENCH_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=${2:-2}
ROUNDS=${ROUNDS:-2}
GEN=${GEN_TOKENS:-16}
WORK=${BENCH_DIR:-/tmp/df11-bench-codecs}
DF11="$BUILD/launcher/df11"
RUN="$BUILD/launcher/df11-run"
TOKENIZER=${TOKENIZER:-$BUILD/data/tokenizers/llama-3.1}
if [ ! -f "$WORK/ready" ]; then
  rm -rf "$WORK" && mkdir -p "$WORK"
  "$DF11" -q make-tiny --arch llama --layers 24 --hidden 1024 --heads 16 --kv-heads 4 \
    --intermediate 4096 --vocab-from "$TOKENIZER" --tie-embeddings --seed 7 "$WORK/bf16" >/dev/null
  "$DF11" -q compress "$WORK/bf16" "$WORK/df11" --threads "$THREADS" >/dev/null
  touch "$WORK/ready"
fi
# run NAME MODEL [FLAGS...]: appends the bench's JSON lines to $WORK/NAME.jsonl, its log to
# $WORK/NAME.log.
run() {
  local name=$1 model=$2
  shift 2
  "$RUN" bench --model "$WORK/$model" --device cpu --threads "$THREADS" --batch-sizes 1,8 \
    --prompt-tokens 32 --gen-tokens "$GEN" --json "$WORK/$name.jsonl" "$@" >>"$WORK/$name.log" 2>&1
}
rm -f "$WORK"/*.jsonl "$WORK"/*.log
for round in $(seq "$ROUNDS"); do
  run bf16 bf16
  run df11 df11
  run ew4 df11 --weight-codec ew4
done
field() { sed -n "s/.*\"$2\":\([^,}]*\).*/\1/p" <<<"$1" | head -1; }
best() {  # best NAME BATCH FIELD
  grep -h '"bench":"generate"' "$WORK/$1.jsonl" | grep "\"batch\":$2[,}]" |
    while IFS= read -r l; do field "$l" "$3"; done | sort -g | tail -1
}
params=$(du -sb "$WORK/bf16/model.safetensors" | awk '{printf "%.0f", $1 / 2 / 1e6}')
echo "model: ~${params} M params (BF16 $(du -sh "$WORK/bf16" | cut -f1), DF11 $(du -sh "$WORK/df11" | cut -f1)); $THREADS threads; best of $ROUNDS"
echo
echo "| batch | codec | decode tok/s | vs BF16 | prefill tok/s | vs BF16 |"
echo "|---|---|---|---|---|---|"
for b in 1 8; do
  d0=$(best bf16 $b decode_tok_s) p0=$(best bf16 $b prefill_tok_s)
  for c in bf16 df11 ew4; do
    d=$(best $c $b decode_tok_s) p=$(best $c $b prefill_tok_s)
    awk -v b="$b" -v c="$c" -v d="$d" -v p="$p" -v d0="$d0" -v p0="$p0" \
      'BEGIN {printf "| %s | %s | %.2f | %.2fx | %.1f | %.2fx |\n", b, c, d, d / d0, p, p / p0}'
  done
done
echo
grep -h -m1 "weights served as" "$WORK/ew4.log" || true
for c in bf16 df11 ew4; do
  echo "load $c (best of $ROUNDS): $(grep -h '"bench":"generate"' "$WORK/$c.jsonl" |
    while IFS= read -r l; do field "$l" load_s; done | sort -g | head -1) s"
done
