#!/usr/bin/env python3
"""Time the reference DFloat11 encoder (pip dfloat11==0.5.0) on one BF16 unit.

Run it with the venv that make_reference_units.sh builds, either directly:
    ${TMPDIR:-/tmp}/df11-ref-venv/bin/python scripts/reference/bench_reference_encoder.py
or from any python3 with --venv (the script re-executes itself with that venv's interpreter):
    python3 scripts/reference/bench_reference_encoder.py --venv /tmp/df11-ref-venv --elements 4194304

Input: --elements N (default 1<<20) values from N(0, 0.02), float32 from numpy's
default_rng(--seed) rounded to BF16 (round-to-nearest-even, via torch), or, with --input FILE,
the BF16 values of a raw little-endian .bf16 file (2 bytes per element, no header).
--save-input FILE writes the generated values in that same raw format, so that the C++
benchmark can be run on exactly the same data:
    .../python bench_reference_encoder.py --elements 1048576 --save-input /tmp/n1m.bf16
    .../python bench_reference_encoder.py --input /tmp/n1m.bf16      # same numbers again

It times get_codec + get_32bit_codec + get_luts + encode_weights (the whole per-unit work of
dfloat11.compress_model, with everything the reference prints discarded) and prints one line:
  {"elements": N, "seconds": s, "weights_per_s": r, "bits_per_weight": b}
with b = 8 * (len(encoded) + len(sign_mantissa) + 4 * len(output_positions) + len(gaps)
              + luts.numel()) / N.
"""

import argparse
import json
import os
import sys
import time


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--elements", "-n", type=int, default=1 << 20)
    ap.add_argument("--seed", type=int, default=20250)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--input", help="raw little-endian BF16 file to encode instead")
    ap.add_argument("--save-input", help="write the generated BF16 input to this raw file")
    ap.add_argument("--venv", help="re-run under DIR/bin/python")
    return ap.parse_args()


def main():
    args = parse()
    if args.venv:
        py = os.path.join(args.venv, "bin", "python")
        if os.path.realpath(sys.prefix) != os.path.realpath(args.venv):
            argv = [a for a in sys.argv[1:]]
            i = argv.index("--venv")
            del argv[i:i + 2]
            os.execv(py, [py, os.path.abspath(__file__)] + argv)

    import numpy as np
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import df11_reference as R

    ref = R.load_reference_utils()

    if args.input:
        raw = np.fromfile(args.input, dtype="<u2")
        w = torch.from_numpy(raw.astype(np.uint16).view(np.int16)).view(torch.bfloat16)
    else:
        rng = np.random.default_rng(args.seed)
        x = rng.standard_normal(size=args.elements, dtype=np.float32) * np.float32(args.std)
        w = torch.from_numpy(x).to(torch.bfloat16)
        if args.save_input:
            w.view(torch.int16).numpy().astype("<i2").tofile(args.save_input)
    n = w.numel()

    t0 = time.perf_counter()
    with R.quiet():
        _codec, counter = ref.get_codec(w)
        codec, _, table = ref.get_32bit_codec(counter)
        luts = ref.get_luts(table)
        encoded, other_8bits, output_positions, gaps, _split = ref.encode_weights(
            [w], codec, R.BYTES_PER_THREAD, R.THREADS_PER_BLOCK)
    s = time.perf_counter() - t0

    total = (encoded.numel() + other_8bits.numel() + 4 * output_positions.numel()
             + gaps.numel() + luts.numel())
    print(json.dumps({"elements": n, "seconds": round(s, 3), "weights_per_s": round(n / s, 1),
                      "bits_per_weight": round(8.0 * total / n, 5)}))


if __name__ == "__main__":
    main()
