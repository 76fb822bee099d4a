#!/usr/bin/env bash
# Build tests/data/tied_interop/ (DF11 interop for tied embeddings) with the reference Python
# package dfloat11==0.5.0 on the CPU: its encoder on a tiny tied model (the directory is kept),
# and its loader on `df11 compress`'s output for the same model (float32 logits kept).
#
# usage: scripts/reference/make_tied_interop.sh DF11_BIN [VENV_DIR] [OUT_DIR]
#   DF11_BIN  the df11 launcher binary (e.g. build/launcher/df11): make-tiny and compress.
#   VENV_DIR  the Python venv (default: ${TMPDIR:-/tmp}/df11-ref-venv, shared with the other
#             reference scripts); created on first use, reused afterwards.
#   OUT_DIR   where the files go (default: tests/data/tied_interop under the repository root);
#             OUT_DIR/reference_df11 must not exist yet.
#
# Everything comes from PyPI with plain pip: dfloat11==0.5.0 (--no-deps: cupy is replaced by a
# CPU stand-in in the script), dahuffman==0.4.2 (pinned by dfloat11), transformers (pinned
# below), accelerate (imported by dfloat11 at module level), safetensors, numpy, torch.
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DF11="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
VENV="${2:-${TMPDIR:-/tmp}/df11-ref-venv}"
OUT="${3:-$ROOT/tests/data/tied_interop}"
PY="${PYTHON:-python3}"
TRANSFORMERS_VERSION="5.24.0"

[[ -x "$DF11" ]] || { echo "not an executable: $DF11" >&2; exit 2; }

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "creating venv in $VENV" >&2
  "$PY" -m venv "$VENV"
fi

PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import importlib.metadata as m, transformers as t, accelerate, \
dahuffman, safetensors, torch, numpy; assert m.version('dfloat11') == '0.5.0'; \
assert t.__version__ == '$TRANSFORMERS_VERSION', t.__version__" 2>/dev/null; then
  "${PIP[@]}" install "transformers==$TRANSFORMERS_VERSION" "dahuffman==0.4.2" accelerate \
    safetensors numpy torch tqdm
  "${PIP[@]}" install "dfloat11==0.5.0" --no-deps
fi

mkdir -p "$OUT"
export CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 \
  MKL_NUM_THREADS=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 \
  PYTHONHASHSEED=0
exec "$VENV/bin/python" "$HERE/make_tied_interop.py" "$DF11" "$OUT"
