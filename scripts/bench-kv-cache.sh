#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The CPU's paged BF16 KV cache, side by side in one run, on a random Llama (4 layers, hidden 256,
# 4 heads / 2 kv, MLP 1024, Llama 3.1 tokenizer, tied embeddings) compressed to DF11, 2 threads:
#  A. 64 greedy requests sharing a ~512-token system prompt (a question of their own after it,
#     max_tokens 8, --batch-size 16), with and without prefix caching (--no-prefix-cache):
#     prompt tokens computed, hit rate, wall time; checks both give every request the same tokens.
#  B. 48 sampled requests (temperature 1, a seed each) of 12..40 prompt tokens, max_tokens 96,
#     ending at their first "x" (stop; most answers end well before 96 tokens), under
#     --kv-tokens 768: reservations of prompt + max_tokens let 6-7 run at once, blocks as they
#     grow let --batch-size 16 run (preempting when they outgrow the pool). Checks the tokens
#     against the same requests with no KV limit (no preemption); with BASELINE_RUN (a df11-run
#     that reserves, e.g. one built before the paged cache, FP32 KV) also runs that beside.
#   scripts/bench-kv-cache.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=${THREADS:-2}
WORK=${BENCH_DIR:-/tmp/df11-bench-kv-cache}
DF11="$BUILD/launcher/df11"
RUN="$BUILD/launcher/df11-run"
TOKENIZER=${TOKENIZER:-$BUILD/data/tokenizers/llama-3.1}
rm -rf "$WORK" && mkdir -p "$WORK"
"$DF11" -q make-tiny --arch llama --layers 4 --hidden 256 --heads 4 --kv-heads 2 \
  --intermediate 1024 --vocab-from "$TOKENIZER" --tie-embeddings --seed 9 "$WORK/bf16" > /dev/null
"$DF11" -q compress "$WORK/bf16" "$WORK/df11" > /dev/null
WORDS=(the of and to in is you that it he was for on are as with his they at be this have from
  or one had by word but not what all were we when your can said there use an each which she do
  how their if will up other about out many then them these so some her would make like him into)
system="You are a careful assistant."
for i in $(seq 0 483); do system+=" ${WORDS[$((i * 7 % ${#WORDS[@]}))]}"; done
for i in $(seq 0 63); do
  echo "{\"custom_id\": \"q$i\", \"prompt\": \"$system Question $i: what about $((i * 37 % 101))?\", \"max_tokens\": 8}"
done > "$WORK/shared.jsonl"
for i in $(seq 0 47); do
  q="Request $i:"
  for j in $(seq 0 $((8 + i * 5 % 29))); do q+=" ${WORDS[$(((i + j * 3) % ${#WORDS[@]}))]}"; done
  echo "{\"custom_id\": \"w$i\", \"prompt\": \"$q\", \"max_tokens\": 96, \"stop\": [\"x\"], \"temperature\": 1.0, \"seed\": $i}"
done > "$WORK/wait.jsonl"

# run NAME BINARY INPUT FLAGS... -> "wall_s prompt_tokens steps"; the log in $WORK/log-NAME.txt
run() {
  local name=$1 bin=$2 input=$3
  shift 3
  rm -f "$WORK/out-$name.jsonl"
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" generate --model "$WORK/df11" --threads "$THREADS" --input "$WORK/$input" \
    --output "$WORK/out-$name.jsonl" "$@" 2> "$WORK/log-$name.txt"
  t1=$(date +%s.%N)
  local prompt steps
  prompt=$(sed -n 's/^prefill: \([0-9]*\) tokens.*/\1/p' "$WORK/log-$name.txt")
  steps=$(sed -n 's/^steps: \([0-9]*\) prefill, \([0-9]*\) decode.*/\1+\2/p' "$WORK/log-$name.txt")
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') $prompt $steps"
}
sorted() { python3 -c 'import json,sys
for l in open(sys.argv[1]): d = json.loads(l); print(d["custom_id"], d.get("token_ids"))' "$1" | sort; }
same() { [ "$(sorted "$1")" = "$(sorted "$2")" ] && echo yes || echo NO; }
kvline() { sed -n 's/^KV cache: //p' "$WORK/log-$1.txt"; }

echo "A. 64 requests sharing a system prompt ($(wc -w <<< "$system") words), batch size 16, $THREADS threads"
read -r s_off p_off st_off <<< "$(run nocache "$RUN" shared.jsonl --batch-size 16 --no-prefix-cache)"
read -r s_on p_on st_on <<< "$(run cache "$RUN" shared.jsonl --batch-size 16)"
printf '%-16s %8s %14s %10s  %s\n' prefix_cache wall_s prompt_tokens steps "KV cache"
printf '%-16s %8s %14s %10s  %s\n' off "$s_off" "$p_off" "$st_off" "$(kvline nocache)"
printf '%-16s %8s %14s %10s  %s\n' on "$s_on" "$p_on" "$st_on" "$(kvline cache)"
awk -v a="$p_off" -v b="$p_on" -v c="$s_off" -v d="$s_on" \
  'BEGIN{printf "prompt tokens computed: %.1fx fewer; wall time: %.2fx\n", a/b, c/d}'
echo "same tokens: $(same "$WORK/out-nocache.jsonl" "$WORK/out-cache.jsonl")"

echo
echo "B. 48 sampled requests (max_tokens 96, stop \"x\"), --kv-tokens 768, batch size 16"
read -r s_pg p_pg st_pg <<< "$(run paged "$RUN" wait.jsonl --batch-size 16 --kv-tokens 768)"
read -r s_nl p_nl st_nl <<< "$(run nolimit "$RUN" wait.jsonl --batch-size 16 --kv-tokens 0)"
printf '%-30s %8s %10s  %s\n' run wall_s steps "KV"
if [ -n "${BASELINE_RUN:-}" ]; then
  read -r s_bl p_bl st_bl <<< "$(run baseline "$BASELINE_RUN" wait.jsonl --batch-size 16 --kv-tokens 768)"
  printf '%-30s %8s %10s  %s\n' "baseline: reservations, FP32" "$s_bl" "$st_bl" \
    "$(sed -n 's/.*\(peak KV reservation [0-9]* tokens[^;]*\).*/\1/p' "$WORK/log-baseline.txt")"
fi
printf '%-30s %8s %10s  %s\n' "paged BF16, blocks as needed" "$s_pg" "$st_pg" "$(kvline paged)"
printf '%-30s %8s %10s  %s\n' "paged BF16, no KV limit" "$s_nl" "$st_nl" "$(kvline nolimit)"
if [ -n "${BASELINE_RUN:-}" ]; then
  awk -v a="$s_bl" -v b="$s_pg" 'BEGIN{printf "baseline / paged wall time: %.2fx\n", a/b}'
fi
echo "same tokens with and without the KV limit (preemptions): $(same "$WORK/out-nolimit.jsonl" "$WORK/out-paged.jsonl")"
tokens=$(grep -o '"completion_tokens":[0-9]*' "$WORK/out-paged.jsonl" | cut -d: -f2 | paste -sd+ | bc)
echo "generated tokens: $tokens"
