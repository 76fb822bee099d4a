#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# df11-run against llama.cpp on the CPU, side by side: the same random Llama (`df11 make-tiny`,
# by default the 0.38 B model of BENCHMARKS.md: 8 layers, hidden 1024, 16/4 heads, MLP 4096,
# the Llama 3.1 vocabulary, untied head), the same thread counts, runs alternating between the
# two programs. Never part of the build, the tests or CI.
#
# llama.cpp comes from the source shipped in the `llama-cpp-python` sdist on PyPI (plain pip
# download, no wheel), built with its own CMake (GGML_NATIVE: the instructions of this CPU);
# the model goes to a BF16 GGUF through llama.cpp's own convert_hf_to_gguf.py, run in the
# reference venv (venv.sh) with sentencepiece installed beside it under WORK (the converter
# imports it even for a tokenizer.json vocabulary).
#
#   scripts/reference/llama_cpp_compare.sh [BUILD_DIR] [THREADS,...]
#
# Figures, each per thread count and round:
#   llama.cpp  llama-bench -p 128 -n 32 (pp128, tg32 = decode batch 1) and
#              llama-batched-bench -npp 128 -ntg 32 -npl 1,8 (prefill and decode of 1 and 8
#              sequences)
#   df11-run   bench --prompt-tokens 128 --gen-tokens 32 --batch-sizes 1,8, BF16 and DF11 as
#              stored, and the DF11 files served as ew4 (--weight-codec ew4)
# Raw JSON lines go to WORK/results.jsonl, the programs' logs to WORK/runs.log; the summary
# table gives min-max over the rounds.
# Environment: WORK (default /tmp/df11-llama-cpp), ROUNDS (2), LLAMA_CPP_PYTHON_VERSION
# (0.3.36), VENV (reference venv, default /tmp/df11-ref-venv), LAYERS HIDDEN HEADS KV_HEADS MLP
# (the model), PROMPT (128), GEN (32).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
THREADS=${2:-1,2}
WORK=${WORK:-/tmp/df11-llama-cpp}
ROUNDS=${ROUNDS:-2}
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
VENV=${VENV:-/tmp/df11-ref-venv}
LAYERS=${LAYERS:-8} HIDDEN=${HIDDEN:-1024} HEADS=${HEADS:-16} KV_HEADS=${KV_HEADS:-4}
MLP=${MLP:-4096} PROMPT=${PROMPT:-128} GEN=${GEN:-32}
source "$ROOT/scripts/reference/venv.sh"
mkdir -p "$WORK"

# 1. llama.cpp from the sdist.
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
if [[ ! -f "$SRC/CMakeLists.txt" ]]; then
  ref_venv "$VENV"
  ref_pip "$VENV" download --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$WORK"
  tar -xzf "$WORK/llama_cpp_python-$VERSION.tar.gz" -C "$WORK"
fi
LBUILD="$WORK/llama-build"
if [[ ! -x "$LBUILD/bin/llama-bench" || ! -x "$LBUILD/bin/llama-batched-bench" ]]; then
  cmake -S "$SRC" -B "$LBUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
    -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DGGML_CCACHE=OFF > "$WORK/llama-cmake.log"
  cmake --build "$LBUILD" -j2 --target llama-bench llama-batched-bench > "$WORK/llama-build.log"
fi

# 2. The model: BF16, its DF11 copy, and llama.cpp's BF16 GGUF of it.
MODEL="$WORK/model-l$LAYERS-h$HIDDEN-a$HEADS-kv$KV_HEADS-m$MLP"
if [[ ! -f "$MODEL/gguf/model-bf16.gguf" ]]; then
  rm -rf "$MODEL" && mkdir -p "$MODEL/gguf"
  "$BUILD/launcher/df11" -q make-tiny --arch llama --layers "$LAYERS" --hidden "$HIDDEN" \
    --heads "$HEADS" --kv-heads "$KV_HEADS" --intermediate "$MLP" \
    --vocab-from "$BUILD/data/tokenizers/llama-3.1" --seed 7 "$MODEL/bf16" > /dev/null
  "$BUILD/launcher/df11" -q compress "$MODEL/bf16" "$MODEL/df11" > /dev/null
  ref_venv_transformers "$VENV"
  if ! PYTHONPATH="$WORK/pylib" ref_venv_has "$VENV" "import sentencepiece"; then
    ref_pip "$VENV" install --target "$WORK/pylib" sentencepiece
  fi
  PYTHONPATH="$WORK/pylib:$SRC/gguf-py" "$VENV/bin/python" "$SRC/convert_hf_to_gguf.py" \
    "$MODEL/bf16" --outtype bf16 --outfile "$MODEL/gguf/model-bf16.gguf" > "$WORK/convert.log" 2>&1
fi

# 3. Alternating runs.
RESULTS="$WORK/results.jsonl" LOG="$WORK/runs.log"
: > "$RESULTS"
: > "$LOG"
tag() {  # program round threads: prefix each JSON line of stdin
  sed -n "s/^{/{\"program\": \"$1\", \"round\": $2, \"threads_run\": $3, /p" >> "$RESULTS"
}
for round in $(seq "$ROUNDS"); do
  for t in ${THREADS//,/ }; do
    echo "round $round, $t thread(s)" >&2
    "$LBUILD/bin/llama-bench" -m "$MODEL/gguf/model-bf16.gguf" -t "$t" -p "$PROMPT" -n "$GEN" \
      -r 1 -o jsonl 2>> "$LOG" | tag llama-bench "$round" "$t"
    "$LBUILD/bin/llama-batched-bench" -m "$MODEL/gguf/model-bf16.gguf" -t "$t" -tb "$t" \
      -c $(((PROMPT + GEN) * 8)) -b 2048 -ub 512 -npp "$PROMPT" -ntg "$GEN" -npl 1,8 \
      --output-format jsonl 2>> "$LOG" | tag llama-batched-bench "$round" "$t"
    for format in bf16 df11 ew4; do
      codec=()
      [[ $format == ew4 ]] && codec=(--weight-codec ew4)
      "$BUILD/launcher/df11-run" bench --model "$MODEL/${format/ew4/df11}" --threads "$t" \
        --batch-sizes 1,8 --prompt-tokens "$PROMPT" --gen-tokens "$GEN" "${codec[@]}" 2>> "$LOG" |
        tag "df11-run-$format" "$round" "$t"
    done
  done
done

# 4. The table: min-max over rounds per figure.
python3 - "$RESULTS" "$PROMPT" <<'EOF'
import collections, json, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r = json.loads(line)
    p, t = r["program"], r["threads_run"]
    if p == "llama-bench":
        key = "prefill" if r["n_prompt"] > 0 else "decode"
        rows[(t, f"{key}, batch 1" if key == "decode" else "prefill, batch 1", "llama.cpp")].append(r["avg_ts"])
    elif p == "llama-batched-bench":
        rows[(t, f"prefill, batch {r['pl']}", "llama.cpp batched")].append(r["speed_pp"])
        rows[(t, f"decode, batch {r['pl']}", "llama.cpp batched")].append(r["speed_tg"])
    else:
        col = {"bf16": "df11-run BF16", "df11": "df11-run DF11", "ew4": "df11-run ew4"}[p.split("-")[-1]]
        rows[(t, f"prefill, batch {r['batch']}", col)].append(r["prefill_tok_s"])
        rows[(t, f"decode, batch {r['batch']}", col)].append(r["decode_tok_s"])
cols = ["llama.cpp", "llama.cpp batched", "df11-run BF16", "df11-run DF11", "df11-run ew4"]
fmt = lambda v: "" if not v else (f"{min(v):.1f}" if len(v) == 1 else f"{min(v):.1f}-{max(v):.1f}")
print(f"prompt {sys.argv[2]} tokens; tokens/s, min-max over rounds")
print("| threads | figure | " + " | ".join(cols) + " | BF16 / llama.cpp (best) |")
print("|---" * (len(cols) + 3) + "|")
for t in sorted({k[0] for k in rows}):
    for fig in ["prefill, batch 1", "decode, batch 1", "prefill, batch 8", "decode, batch 8"]:
        vals = [rows.get((t, fig, c), []) for c in cols]
        ref = max(vals[0] + vals[1]) if vals[0] or vals[1] else 0
        ratio = f"{max(vals[2]) / ref:.2f}x" if ref and vals[2] else ""
        print(f"| {t} | {fig} | " + " | ".join(fmt(v) for v in vals) + f" | {ratio} |")
EOF
