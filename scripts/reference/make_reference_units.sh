#!/usr/bin/env bash
# Build the golden DF11 units (tests/data/ref_units/) with the reference Python encoder.
#
# usage: scripts/reference/make_reference_units.sh [VENV_DIR] [OUT_DIR]
#   VENV_DIR  where the Python venv lives (default: ${TMPDIR:-/tmp}/df11-ref-venv); created
#             on first use, reused afterwards.
#   OUT_DIR   where the units go (default: tests/data/ref_units under the repository root).
#
# Everything comes from PyPI with plain pip: dfloat11==0.5.0 (installed --no-deps, because its
# declared dependencies pull in transformers/accelerate/huggingface-hub, which the encoder does
# not need), the encoder's own imports (dahuffman==0.4.2 as pinned by dfloat11, tqdm, numpy),
# safetensors, and torch. PyPI only has the default (CUDA-enabled) torch build for Linux
# x86_64, so the first run downloads a few GB; the encoder itself only runs on the CPU.
#
# The same venv runs scripts/reference/bench_reference_encoder.py:
#   "$VENV_DIR/bin/python" scripts/reference/bench_reference_encoder.py --elements 1048576
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${1:-${TMPDIR:-/tmp}/df11-ref-venv}"
OUT="${2:-$ROOT/tests/data/ref_units}"
source "$HERE/venv.sh"

ref_venv "$VENV"
if ! ref_venv_has "$VENV" 'import dfloat11_ref_ok'; then
  ref_pip "$VENV" install "dahuffman==$DAHUFFMAN_VERSION" tqdm numpy safetensors torch
  # pip may report that dfloat11's accelerate/huggingface-hub/transformers are missing: expected,
  # the encoder module does not import them.
  ref_pip "$VENV" install "dfloat11==$DFLOAT11_VERSION" --no-deps
  # marker so that later runs skip the (slow) pip resolution
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "# installed by make_reference_units.sh" > "$site/dfloat11_ref_ok.py"
fi

mkdir -p "$OUT"
exec "$VENV/bin/python" "$HERE/make_reference_units.py" "$OUT"
