#!/usr/bin/env bash
# Write the tiny transformers-made models and their reference logits (tests/data/hf_models/):
# models built and saved by Hugging Face transformers itself, logits in float32 from their BF16
# weights, on the CPU. See make_hf_model_goldens.py for what each model covers.
#
# usage: scripts/reference/make_hf_model_goldens.sh [VENV_DIR] [OUT_DIR]
#   VENV_DIR  the Python venv (default: ${TMPDIR:-/tmp}/df11-ref-venv, shared with the other
#             reference scripts); created on first use, reused afterwards.
#   OUT_DIR   where the files go (default: tests/data/hf_models under the repository root).
#
# Everything comes from PyPI with plain pip (transformers pinned below, safetensors, numpy,
# torch); nothing is downloaded from a model hub.
set -euo pipefail

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${1:-${TMPDIR:-/tmp}/df11-ref-venv}"
OUT="${2:-$ROOT/tests/data/hf_models}"
source "$HERE/venv.sh"

ref_venv_transformers "$VENV"

mkdir -p "$OUT"
ref_cpu_env
exec "$VENV/bin/python" "$HERE/make_hf_model_goldens.py" "$OUT"
