"""Shared helpers for the scripts that drive the reference DFloat11 encoder (pip `dfloat11`).

The package's __init__ imports cupy and needs a GPU, so the encoder module `dfloat11_utils.py`
is loaded straight from the installed package directory instead. Its functions print a lot
(code tables, LUT dictionaries, tqdm bars); `quiet()` silences stdout and stderr around them.

The reference is Apache-2.0 (Copyright 2025 Tianyi Zhang); nothing of it is copied here, it is
only imported from the installed wheel.
"""

import contextlib
import importlib.metadata
import importlib.util
import io
import os
import sys

BYTES_PER_THREAD = 8
THREADS_PER_BLOCK = 512
BLOCK_BYTES = BYTES_PER_THREAD * THREADS_PER_BLOCK  # 4096
WINDOW_BITS = 8 * BYTES_PER_THREAD  # 64
BLOCK_BITS = 8 * BLOCK_BYTES  # 32768


def load_reference_utils():
    """Import dfloat11/dfloat11_utils.py without running dfloat11/__init__.py."""
    spec = importlib.util.find_spec("dfloat11")  # finds the package, does not execute it
    if spec is None or not spec.submodule_search_locations:
        sys.exit("dfloat11 is not installed in this interpreter "
                 "(run scripts/reference/make_reference_units.sh to build the venv)")
    path = os.path.join(list(spec.submodule_search_locations)[0], "dfloat11_utils.py")
    mspec = importlib.util.spec_from_file_location("dfloat11_utils", path)
    mod = importlib.util.module_from_spec(mspec)
    with quiet():
        mspec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def quiet():
    """Swallow whatever the reference prints (stdout and stderr, e.g. tqdm)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out


def package_versions():
    names = ["dfloat11", "dahuffman", "numpy", "torch", "safetensors", "tqdm"]
    versions = {}
    for n in names:
        try:
            versions[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            versions[n] = None
    versions["python"] = sys.version.split()[0]
    return versions


def run_reference(ref, weights, codec_source=None):
    """Compress a unit exactly as dfloat11.compress_model does for one module.

    weights: list of BF16 tensors (any shape); they are flattened in order.
    codec_source: optional BF16 tensor the Huffman code is built from instead of the unit's own
    data (compress_model always uses the unit itself; this is only for `skewed_32bit`).
    Returns dict with codec, table, luts, encoded, sign_mantissa, output_positions (uint32),
    gaps, split_positions, and the printed text of the reference.
    """
    import torch

    flats = [w.flatten() for w in weights]
    with quiet() as printed:
        src = torch.cat(flats) if codec_source is None else codec_source.flatten()
        _codec, counter = ref.get_codec(src)
        codec, _, table = ref.get_32bit_codec(counter)
        luts = ref.get_luts(table)
        encoded, other_8bits, output_positions, gaps, split_positions = ref.encode_weights(
            flats, codec, BYTES_PER_THREAD, THREADS_PER_BLOCK)
    return dict(unlimited_codec=_codec, counter=counter, codec=codec, table=table, luts=luts,
                encoded=encoded, sign_mantissa=other_8bits,
                output_positions=output_positions, gaps=gaps,
                split_positions=split_positions, printed=printed.getvalue())


def reference_bits_per_weight(r, n_elements, include_luts=False):
    """8 * (bytes the reference counts in its 'Compression factor' line) / n_elements."""
    total = (r["encoded"].numel() + r["sign_mantissa"].numel()
             + 4 * r["output_positions"].numel() + r["gaps"].numel())
    if include_luts:
        total += r["luts"].numel()
    return 8.0 * total / n_elements
