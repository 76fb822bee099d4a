#!/usr/bin/env bash
# Build the reference logits (tests/data/ref_logits/) with Hugging Face transformers on the CPU,
# for tiny random models made by `df11 make-tiny`.
#
# usage: scripts/reference/make_reference_logits.sh DF11_BIN [VENV_DIR] [OUT_DIR]
#   DF11_BIN  the df11 launcher binary (e.g. build/launcher/df11); its `make-tiny` makes the
#             models, in a temporary directory that is removed afterwards.
#   VENV_DIR  where the Python venv lives (default: ${TMPDIR:-/tmp}/df11-ref-venv, the same one
#             make_reference_units.sh uses); created on first use, reused afterwards.
#   OUT_DIR   where the files go (default: tests/data/ref_logits under the repository root).
#
# Everything comes from PyPI with plain pip: transformers (pinned below), safetensors, numpy and
# torch (the default CUDA-enabled build is what PyPI has for Linux x86_64; it only runs on the
# CPU here). transformers pulls in tokenizers, huggingface-hub, regex, pyyaml etc.; nothing is
# downloaded from a model hub (HF_HUB_OFFLINE=1: the models are local directories).
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
fi

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DF11="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
VENV="${2:-${TMPDIR:-/tmp}/df11-ref-venv}"
OUT="${3:-$ROOT/tests/data/ref_logits}"
source "$HERE/venv.sh"

[[ -x "$DF11" ]] || { echo "not an executable: $DF11" >&2; exit 2; }

ref_venv_transformers "$VENV"

mkdir -p "$OUT"
ref_cpu_env
exec "$VENV/bin/python" "$HERE/make_reference_logits.py" "$DF11" "$OUT"
