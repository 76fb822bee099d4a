#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# CPU prefill/decode speed of a BF16 model and its DF11 copy, side by side: a random ~100 M-param
# Llama (8 layers, hidden 512, 8 heads / 4 kv, MLP 2048, Llama 3.1 tokenizer, tied embeddings),
# a batch of 8 prompts x 32 greedy tokens, each model run twice in alternation (best kept).
#   scripts/bench-model.sh [BUILD_DIR] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=${2:-2}
WORK=${BENCH_DIR:-/tmp/df11-bench-model}
DF11="$BUILD/launcher/df11"
RUN="$BUILD/launcher/df11-run"
TOKENIZER=${TOKENIZER:-$BUILD/data/tokenizers/llama-3.1}
rm -rf "$WORK" && mkdir -p "$WORK"
"$DF11" -q make-tiny --arch llama --layers 8 --hidden 512 --heads 8 --kv-heads 4 \
  --intermediate 2048 --vocab-from "$TOKENIZER" --tie-embeddings --seed 7 "$WORK/bf16" > /dev/null
"$DF11" -q compress "$WORK/bf16" "$WORK/df11" > /dev/null
for i in 1 2 3 4 5 6 7 8; do
  echo "{\"custom_id\": \"p$i\", \"prompt\": \"Prompt number $i: the quick brown fox jumps over the lazy dog and keeps running far away\", \"max_tokens\": 32}"
done > "$WORK/batch.jsonl"
run() {  # model -> "prefill_tps decode_tps peak_mb"
  "$RUN" generate --model "$WORK/$1" --threads "$THREADS" --batch-size 8 \
    --input "$WORK/batch.jsonl" --output "$WORK/out-$1.jsonl" 2>&1 |
    sed -n 's/.*prefill: .*(\([0-9.]*\) tokens\/s); decode: .*(\([0-9.]*\) tokens\/s); peak memory \([0-9.]*\) MB/\1 \2 \3/p'
}
best_p=(0 0) best_d=(0 0) peak=(0 0)
for round in 1 2; do
  for idx in 0 1; do
    model=$([ $idx -eq 0 ] && echo bf16 || echo df11)
    read -r p d m <<< "$(run $model)"
    best_p[$idx]=$(awk -v a="${best_p[$idx]}" -v b="$p" 'BEGIN{print (b>a)?b:a}')
    best_d[$idx]=$(awk -v a="${best_d[$idx]}" -v b="$d" 'BEGIN{print (b>a)?b:a}')
    peak[$idx]=$m
  done
done
cmp -s <(sort "$WORK/out-bf16.jsonl") <(sort "$WORK/out-df11.jsonl") && same=yes || same=NO
params=$(python3 -c "print(1)" >/dev/null 2>&1; du -sb "$WORK/bf16/model.safetensors" | awk '{printf "%.1f", $1/2/1e6}')
printf 'model: ~%s M params (BF16 %s, DF11 %s); threads %s; identical outputs: %s\n' "$params" \
  "$(du -sh "$WORK/bf16" | cut -f1)" "$(du -sh "$WORK/df11" | cut -f1)" "$THREADS" "$same"
printf '%-6s %14s %14s %10s\n' model prefill_tok/s decode_tok/s peak_MB
printf '%-6s %14s %14s %10s\n' BF16 "${best_p[0]}" "${best_d[0]}" "${peak[0]}"
printf '%-6s %14s %14s %10s\n' DF11 "${best_p[1]}" "${best_d[1]}" "${peak[1]}"
awk -v p0="${best_p[0]}" -v p1="${best_p[1]}" -v d0="${best_d[0]}" -v d1="${best_d[1]}" \
  'BEGIN{printf "DF11/BF16: prefill %.2fx, decode %.2fx\n", p1/p0, d1/d0}'
