#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Speculative decoding by prompt lookup at batch 1 (CPU, DF11), side by side in one run, on the
# random ~100 M-param Llama of bench-model.sh (8 layers, hidden 512, 8 heads / 4 kv, MLP 2048,
# Llama 3.1 tokenizer, tied embeddings), $THREADS threads (default 2):
#  A. copy: prompts that quote text the model will produce, as "repeat this paragraph" requests
#     do with a trained model. A random model copies nothing, so the quoted text is its own: a
#     first run continues each seed sentence greedily (PREP_TOKENS tokens), and the benchmark's
#     prompt is the seed sentence followed by that continuation; the model then continues its own
#     (loop-prone) text, and lookup finds its tail in the prompt.
#  B. no match: sampled requests (temperature 1, a seed each): a random model's samples over
#     128256 ids never repeat a tail, so lookup drafts nothing and every step is an ordinary one.
# Each workload runs without and with --speculative prompt-lookup (k = $K), REQUESTS requests of
# TOKENS new tokens each at --batch-size 1, alternating, ROUNDS times each (best kept: the host is
# shared), and prints the decode tokens/s of the summary (its step times include drafting), the
# acceptance rate and the tokens per step, and checks that both gave the same tokens.
#   scripts/bench-speculative.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=${THREADS:-2}
REQUESTS=${REQUESTS:-4}
TOKENS=${TOKENS:-48}
PREP_TOKENS=${PREP_TOKENS:-96}
K=${K:-4}
ROUNDS=${ROUNDS:-2}
WORK=${BENCH_DIR:-/tmp/df11-bench-speculative}
DF11="$BUILD/launcher/df11"
RUN="$BUILD/launcher/df11-run"
TOKENIZER=${TOKENIZER:-$BUILD/data/tokenizers/llama-3.1}
rm -rf "$WORK" && mkdir -p "$WORK"
"$DF11" -q make-tiny --arch llama --layers 8 --hidden 512 --heads 8 --kv-heads 4 \
  --intermediate 2048 --vocab-from "$TOKENIZER" --tie-embeddings --seed 7 "$WORK/bf16" > /dev/null
"$DF11" -q compress "$WORK/bf16" "$WORK/df11" > /dev/null
WORDS=(the of and to in is you that it he was for on are as with his they at be this have from
  or one had by word but not what all were we when your can said there use an each which she do)
for i in $(seq 1 "$REQUESTS"); do
  s="Paragraph $i:"
  for j in $(seq 0 11); do s+=" ${WORDS[$(((i * 5 + j * 7) % ${#WORDS[@]}))]}"; done
  echo "{\"custom_id\": \"c$i\", \"prompt\": \"$s\", \"max_tokens\": $PREP_TOKENS}"
  echo "{\"custom_id\": \"n$i\", \"prompt\": \"$s\", \"max_tokens\": $TOKENS," \
    "\"temperature\": 1.0, \"seed\": $i}" >&3
done > "$WORK/seed.jsonl" 3> "$WORK/nomatch.jsonl"
"$RUN" generate --model "$WORK/df11" --threads "$THREADS" --batch-size "$REQUESTS" \
  --input "$WORK/seed.jsonl" --output "$WORK/seed-out.jsonl" 2> "$WORK/log-seed.txt"
python3 - "$WORK" "$TOKENS" <<'PY'
import json, sys
work, tokens = sys.argv[1], int(sys.argv[2])
seeds = {j["custom_id"]: j for j in map(json.loads, open(f"{work}/seed.jsonl"))}
with open(f"{work}/copy.jsonl", "w") as out:
    for line in open(f"{work}/seed-out.jsonl"):
        r = json.loads(line)
        prompt = seeds[r["custom_id"]]["prompt"] + r["text"]
        out.write(json.dumps({"custom_id": r["custom_id"], "prompt": prompt,
                              "max_tokens": tokens}) + "\n")
PY

# run NAME INPUT FLAGS... -> "decode_tokens_per_s acceptance_% tokens_per_step"
run() {
  local name=$1 input=$2
  shift 2
  rm -f "$WORK/out-$name.jsonl"
  "$RUN" generate --model "$WORK/df11" --threads "$THREADS" --batch-size 1 \
    --input "$WORK/$input" --output "$WORK/out-$name.jsonl" "$@" 2> "$WORK/log-$name.txt"
  local tps acc tps_step
  tps=$(sed -n 's/.*decode: .*(\([0-9.]*\) tokens\/s).*/\1/p' "$WORK/log-$name.txt")
  acc=$(sed -n 's/^speculative decoding: .*(\([0-9.]*\)%).*/\1/p' "$WORK/log-$name.txt")
  tps_step=$(sed -n 's/^speculative decoding: .*; \([0-9.]*\) tokens per sequence.*/\1/p' \
    "$WORK/log-$name.txt")
  echo "$tps ${acc:--} ${tps_step:-1.00}"
}
sorted() { python3 -c 'import json,sys
for l in open(sys.argv[1]):
  d = json.loads(l); print(d["custom_id"], d.get("token_ids"))' "$1" | sort; }
same() { [ "$(sorted "$1")" = "$(sorted "$2")" ] && echo yes || echo NO; }

echo "batch 1, $REQUESTS requests x $TOKENS tokens, $THREADS threads, k = $K, best of $ROUNDS;" \
  "load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-10s %-14s %12s %12s %16s\n' workload speculation "decode tok/s" "accepted %" \
  "tokens per step"
best() { awk -v a="$1" -v b="$2" 'BEGIN{print (b > a ? b : a)}'; }
for w in copy nomatch; do
  t_off=0 t_on=0
  for round in $(seq 1 "$ROUNDS"); do
    read -r t a_off s_off <<< "$(run "$w-off" "$w.jsonl")"
    t_off=$(best "$t_off" "$t")
    read -r t a_on s_on <<< "$(run "$w-on" "$w.jsonl" --speculative prompt-lookup \
      --num-speculative-tokens "$K")"
    t_on=$(best "$t_on" "$t")
  done
  printf '%-10s %-14s %12s %12s %16s\n' "$w" off "$t_off" "$a_off" "$s_off"
  printf '%-10s %-14s %12s %12s %16s\n' "$w" prompt-lookup "$t_on" "$a_on" "$s_on"
  awk -v a="$t_off" -v b="$t_on" -v w="$w" 'BEGIN{printf "%s: %.2fx decode tokens/s", w, b/a}'
  echo "; same tokens: $(same "$WORK/out-$w-off.jsonl" "$WORK/out-$w-on.jsonl")"
done
