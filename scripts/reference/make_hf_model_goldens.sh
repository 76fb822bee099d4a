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
PY="${PYTHON:-python3}"
TRANSFORMERS_VERSION="5.24.0"

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "creating venv in $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import transformers as t, safetensors, torch, numpy; \
assert t.__version__ == '$TRANSFORMERS_VERSION', t.__version__" 2>/dev/null; then
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install \
    "transformers==$TRANSFORMERS_VERSION" safetensors numpy torch
fi

mkdir -p "$OUT"
export CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 \
  MKL_NUM_THREADS=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 \
  PYTHONHASHSEED=0
exec "$VENV/bin/python" "$HERE/make_hf_model_goldens.py" "$OUT"
