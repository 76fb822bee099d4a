# SPDX-License-Identifier: Apache-2.0
# The Python venv the make_*.sh reference scripts share (sourced by them): the pinned versions,
# making the venv, checking and installing what a script needs, and the environment its Python
# runs in. PyPI through plain pip only; nothing here downloads a model.
#   ref_venv VENV                    makes the venv VENV with $PYTHON (default python3) unless it
#                                    exists
#   ref_venv_has VENV CODE           whether Python code CODE runs in VENV without error
#   ref_pip VENV ARGS...             quiet pip in VENV
#   ref_venv_transformers VENV       VENV with transformers $TRANSFORMERS_VERSION, safetensors,
#                                    numpy and torch (installed unless there)
#   ref_cpu_env                      exports what keeps a reference run on the CPU, offline and
#                                    repeatable (one thread, no hub, fixed hash seed)

TRANSFORMERS_VERSION="5.24.0"
DFLOAT11_VERSION="0.5.0"
# As pinned by dfloat11 0.5.0.
DAHUFFMAN_VERSION="0.4.2"

ref_venv() {
  if [[ ! -x "$1/bin/python" ]]; then
    echo "creating venv in $1" >&2
    "${PYTHON:-python3}" -m venv "$1"
  fi
}

ref_venv_has() {
  "$1/bin/python" -c "$2" 2>/dev/null
}

ref_pip() {
  local venv="$1"
  shift
  "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"
}

ref_venv_transformers() {
  ref_venv "$1"
  if ! ref_venv_has "$1" "import transformers as t, safetensors, torch, numpy; \
assert t.__version__ == '$TRANSFORMERS_VERSION', t.__version__"; then
    # pip may report that dfloat11 (installed in the same venv by make_reference_units.sh
    # --no-deps) lacks accelerate: expected and harmless.
    ref_pip "$1" install "transformers==$TRANSFORMERS_VERSION" safetensors numpy torch
  fi
}

ref_cpu_env() {
  export CUDA_VISIBLE_DEVICES="" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1 \
    PYTHONHASHSEED=0
}
