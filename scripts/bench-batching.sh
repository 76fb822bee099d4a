#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Continuous vs static batching on the CPU, side by side: a random Llama (4 layers, hidden 256,
# 4 heads / 2 kv, MLP 1024, Llama 3.1 tokenizer, tied embeddings) compressed to DF11, 48 greedy
# requests whose lengths vary (max_tokens 4..64, as answers do), batch size 8; each mode run twice
# in alternation (best kept). Prints wall time, generated tokens per second of wall time, the step
# counts and the requests' median / p90 time to first token (from the start of the run), and
# checks that both modes give every request the same tokens.
#   scripts/bench-batching.sh [BUILD_DIR] [THREADS]
# LAYERS, HIDDEN and MLP (environment) change the model's shape (defaults 4, 256, 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=${2:-2}
LAYERS=${LAYERS:-4} HIDDEN=${HIDDEN:-256} MLP=${MLP:-1024}
WORK=${BENCH_DIR:-/tmp/df11-bench-batching}
DF11="$BUILD/launcher/df11"
RUN="$BUILD/launcher/df11-run"
TOKENIZER=${TOKENIZER:-$BUILD/data/tokenizers/llama-3.1}
rm -rf "$WORK" && mkdir -p "$WORK"
"$DF11" -q make-tiny --arch llama --layers "$LAYERS" --hidden "$HIDDEN" --heads 4 --kv-heads 2 \
  --intermediate "$MLP" --vocab-from "$TOKENIZER" --tie-embeddings --seed 9 "$WORK/bf16" > /dev/null
"$DF11" -q compress "$WORK/bf16" "$WORK/df11" > /dev/null
for i in $(seq 0 47); do
  echo "{\"custom_id\": \"q$i\", \"prompt\": \"Question $i: say something about the number $((i * 37 % 101))\", \"max_tokens\": $((4 + (i * 29) % 61))}"
done > "$WORK/batch.jsonl"
tokens=0
run() {  # mode -> "seconds prefill_steps decode_steps ttft_median ttft_p90"
  rm -f "$WORK/out-$1.jsonl"
  local t0 t1
  t0=$(date +%s.%N)
  "$RUN" generate --model "$WORK/df11" --threads "$THREADS" --batch-size 8 --batching "$1" \
    --input "$WORK/batch.jsonl" --output "$WORK/out-$1.jsonl" 2> "$WORK/log-$1.txt"
  t1=$(date +%s.%N)
  local steps ttft
  steps=$(sed -n 's/^steps: \([0-9]*\) prefill, \([0-9]*\) decode.*/\1 \2/p' "$WORK/log-$1.txt")
  ttft=$(sed -n 's/^latency .*first token median \([0-9.]*\) s, p90 \([0-9.]*\) s;.*/\1 \2/p' "$WORK/log-$1.txt")
  echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}') $steps $ttft"
}
best=(1e9 1e9) steps=("" "") ttft=("" "")
for round in 1 2; do
  for idx in 0 1; do
    mode=$([ $idx -eq 0 ] && echo static || echo continuous)
    read -r s p d tm t9 <<< "$(run $mode)"
    if awk -v a="${best[$idx]}" -v b="$s" 'BEGIN{exit !(b < a)}'; then
      best[$idx]=$s
      ttft[$idx]="$tm / $t9"
    fi
    steps[$idx]="$p prefill + $d decode"
  done
done
# Same tokens per request in both modes (lines come in the order requests finish).
sorted() { python3 -c 'import json,sys
for l in sorted(open(sys.argv[1])): print(json.dumps({k: json.loads(l)[k] for k in ("custom_id","token_ids")}, sort_keys=True))' "$1" | sort; }
if command -v python3 > /dev/null; then
  [ "$(sorted "$WORK/out-static.jsonl")" = "$(sorted "$WORK/out-continuous.jsonl")" ] && same=yes || same=NO
else
  same="(python3 missing: not checked)"
fi
tokens=$(grep -o '"completion_tokens":[0-9]*' "$WORK/out-static.jsonl" | cut -d: -f2 | paste -sd+ | bc)
printf 'layers %s, hidden %s, MLP %s; 48 requests, %s generated tokens, batch size 8, threads %s; same tokens: %s\n' \
  "$LAYERS" "$HIDDEN" "$MLP" "$tokens" "$THREADS" "$same"
printf '%-11s %10s %10s  %-26s %s\n' batching wall_s tokens/s steps "first token s (median / p90)"
printf '%-11s %10s %10s  %-26s %s\n' static "${best[0]}" "$(awk -v t="$tokens" -v s="${best[0]}" 'BEGIN{printf "%.1f", t/s}')" "${steps[0]}" "${ttft[0]}"
printf '%-11s %10s %10s  %-26s %s\n' continuous "${best[1]}" "$(awk -v t="$tokens" -v s="${best[1]}" 'BEGIN{printf "%.1f", t/s}')" "${steps[1]}" "${ttft[1]}"
awk -v a="${best[0]}" -v b="${best[1]}" 'BEGIN{printf "continuous / static throughput: %.2fx\n", a/b}'
