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
source "$HERE/venv.sh"

[[ -x "$DF11" ]] || { echo "not an executable: $DF11" >&2; exit 2; }

ref_venv "$VENV"
if ! ref_venv_has "$VENV" "import importlib.metadata as m, transformers as t, accelerate, \
dahuffman, safetensors, torch, numpy; assert m.version('dfloat11') == '$DFLOAT11_VERSION'; \
assert t.__version__ == '$TRANSFORMERS_VERSION', t.__version__"; then
  ref_pip "$VENV" install "transformers==$TRANSFORMERS_VERSION" "dahuffman==$DAHUFFMAN_VERSION" \
    accelerate safetensors numpy torch tqdm
  ref_pip "$VENV" install "dfloat11==$DFLOAT11_VERSION" --no-deps
fi

mkdir -p "$OUT"
ref_cpu_env
exec "$VENV/bin/python" "$HERE/make_tied_interop.py" "$DF11" "$OUT"
