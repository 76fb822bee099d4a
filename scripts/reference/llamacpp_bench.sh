#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# llama.cpp's BF16 speed on one of our BF16 models, for the side-by-side rows in BENCHMARKS.md:
# llama.cpp's source as shipped in the PyPI sdist of llama-cpp-python (pinned below), its own
# converter (convert_hf_to_gguf.py with the sdist's gguf-py, run in the reference venv) to a BF16
# GGUF, and its llama-bench (built from the sdist, CPU only, for this machine). Never part of
# the build, the tests or CI; nothing it writes is committed.
#   scripts/reference/llamacpp_bench.sh MODEL_BF16_DIR [THREADS] [VENV_DIR] [WORK_DIR]
# THREADS defaults to 2, VENV_DIR to ${TMPDIR:-/tmp}/df11-ref-venv, WORK_DIR to
# ${TMPDIR:-/tmp}/df11-llamacpp (the build and the GGUF are kept there for reruns).
# Prints llama-bench's markdown table: prefill of 32 tokens (pp32) and decode of 16 (tg16).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/venv.sh"
model="$(cd "${1:?usage: llamacpp_bench.sh MODEL_BF16_DIR [THREADS] [VENV_DIR] [WORK_DIR]}" && pwd)"
threads="${2:-2}"
venv="${3:-${TMPDIR:-/tmp}/df11-ref-venv}"
work="${4:-${TMPDIR:-/tmp}/df11-llamacpp}"
LLAMA_CPP_PYTHON_VERSION="0.3.36"

ref_venv_transformers "$venv"
# The converter imports sentencepiece before it looks for a tokenizer.model (then falls back to
# tokenizer.json, as our models have).
ref_venv_has "$venv" "import sentencepiece" || ref_pip "$venv" install sentencepiece
mkdir -p "$work"
src="$work/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp"
if [ ! -f "$src/CMakeLists.txt" ]; then
  ref_pip "$venv" download --no-deps --no-binary :all: \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" -d "$work"
  tar -xzf "$work/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$work"
fi
bench="$work/build/bin/llama-bench"
if [ ! -x "$bench" ]; then
  cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DLLAMA_OPENSSL=OFF >"$work/configure.log"
  cmake --build "$work/build" -j2 --target llama-bench >"$work/build.log"
fi
gguf="$work/$(basename "$model")-bf16.gguf"
if [ ! -s "$gguf" ]; then
  ref_cpu_env
  PYTHONPATH="$src/gguf-py" "$venv/bin/python" "$src/convert_hf_to_gguf.py" "$model" \
    --outtype bf16 --outfile "$gguf" >"$work/convert.log" 2>&1
fi
"$bench" -m "$gguf" -t "$threads" -p 32 -n 16 -r 2 -o md
