#!/usr/bin/env python3
"""Write golden DF11 units made by the reference encoder (pip dfloat11==0.5.0).

usage: python make_reference_units.py OUT_DIR     (normally via make_reference_units.sh)

For each unit NAME it writes OUT_DIR/NAME.safetensors holding
  NAME.luts U8[R,256], NAME.encoded_exponent U8, NAME.sign_mantissa U8,
  NAME.output_positions U8 (uint32 LE viewed as bytes), NAME.gaps U8, NAME.split_positions I64
exactly as dfloat11.compress_model registers them, plus the BF16 inputs as
NAME.original.<i> (2-D, in unit order). OUT_DIR/manifest.json describes every unit.

Each unit is also checked here, independently of the reference, against
the published DF11 layout: the LUT decode reproduces the exponents, gaps/output_positions
match the code start positions, and the BF16 originals are rebuilt bit-exactly.
"""

import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import df11_reference as R  # noqa: E402

REF = R.load_reference_utils()


# ----------------------------------------------------------------------------- data helpers

def bf16_normal(rng, shape, std):
    x = rng.standard_normal(size=shape, dtype=np.float32) * np.float32(std)
    return torch.from_numpy(x).to(torch.bfloat16)


def bf16_from_bits(bits):
    return torch.from_numpy(np.ascontiguousarray(bits.astype(np.uint16)).view(np.int16)).view(
        torch.bfloat16)


def exponents_of(t):
    return ((t.contiguous().view(torch.int16).numpy().view(np.uint16) >> 7) & 0xFF).astype(np.int64)


def code_lengths_for(exps):
    """Code lengths {exponent: bits} the reference would choose for these exponents."""
    vals, counts = np.unique(exps, return_counts=True)
    counter = {int(v): int(c) for v, c in zip(vals, counts)}
    with R.quiet():
        _, _, table = REF.get_32bit_codec(counter)
    return {k: l for k, (l, _) in table.items() if isinstance(k, int)}


def nice_shape(n, max_cols=128, min_cols=16, min_rows=4):
    for c in range(max_cols, min_cols - 1, -1):
        if n % c == 0 and n // c >= min_rows:
            return (n // c, c)
    return None


def search(name, seeds, n_range, std, accept, reorder=None, limit_seeds=400):
    """Find (seed, n) so that a N(0,std) matrix of n elements satisfies accept(T, lens, exps).

    reorder(exps, lens) may return a permutation (applied before accept) e.g. to move a long code
    to the end. Returns (tensor 2-D, info)."""
    for seed in seeds[:limit_seeds]:
        rng = np.random.default_rng(seed)
        pool = rng.standard_normal(size=n_range[1], dtype=np.float32) * np.float32(std)
        pool_bf = torch.from_numpy(pool).to(torch.bfloat16)
        pool_exp = exponents_of(pool_bf)
        for n in range(n_range[0], n_range[1]):
            shape = nice_shape(n)
            if shape is None:
                continue
            exps = pool_exp[:n]
            lens = code_lengths_for(exps)
            perm = reorder(exps, lens) if reorder else None
            e = exps if perm is None else exps[perm]
            L = np.array([lens[int(v)] for v in e])
            T = int(L.sum())
            if accept(T, L):
                data = pool_bf[:n] if perm is None else pool_bf[:n][torch.from_numpy(perm)]
                info = dict(seed=int(seed), n=n, std=std, total_bits=T,
                            construction="first n values of default_rng(seed).standard_normal(...)*std as BF16")
                if perm is not None:
                    info["reordered"] = "the element with the longest code swapped with the last one"
                return data.reshape(shape).contiguous(), info
    raise RuntimeError(f"{name}: no matching (seed, n) found")


def longest_last(exps, lens):
    L = np.array([lens[int(v)] for v in exps])
    i = int(np.argmax(L))
    perm = np.arange(len(exps))
    perm[i], perm[-1] = perm[-1], perm[i]
    return perm


# ----------------------------------------------------------------------------- unit makers

def make_normal_single():
    rng = np.random.default_rng(1101)
    return [bf16_normal(rng, (64, 96), 0.02)], {"seed": 1101, "std": 0.02}, None


def make_normal_multi():
    rng = np.random.default_rng(1102)
    shapes = [(48, 32), (16, 32), (32, 80)]
    return [bf16_normal(rng, s, 0.05) for s in shapes], {"seed": 1102, "std": 0.05}, None


def make_multi_block():
    rng = np.random.default_rng(1103)
    return [bf16_normal(rng, (96, 320), 0.02)], {"seed": 1103, "std": 0.02}, None


def fib(k):
    a, b, out = 1, 1, []
    for _ in range(k):
        out.append(a)
        a, b = b, a + b
    return out


def make_skewed_32bit():
    """Fibonacci counts over 33 exponents (9.2 M elements) give an unlimited Huffman code of
    33 bits, which makes the reference's get_32bit_codec loop run. That population is far too
    big to commit, so the code is built from it (get_codec/get_32bit_codec on the population,
    as compress_model would on a unit that large) and the committed unit is a 4k-element
    sample drawn from the same exponents, with every exponent present, encoded with that code."""
    rng = np.random.default_rng(1104)
    exps_sym = np.arange(100, 133)  # 33 exponents, all < 240
    # the rarest exponents are the smallest magnitudes: exponent 100 gets count 1, 132 the most
    counts = np.array(fib(len(exps_sym)), dtype=np.int64)
    pop_exp = np.repeat(exps_sym, counts)
    n_pop = len(pop_exp)
    sign_mant = rng.integers(0, 256, size=n_pop, dtype=np.uint16)
    bits = ((sign_mant & 0x80) << 8) | (pop_exp.astype(np.uint16) << 7) | (sign_mant & 0x7F)
    population = bf16_from_bits(bits)

    # unlimited code: what dahuffman alone would give
    vals, cnt = np.unique(pop_exp, return_counts=True)
    counter = {int(v): int(c) for v, c in zip(vals, cnt)}
    from dahuffman import HuffmanCodec
    unlimited = HuffmanCodec.from_frequencies(counter).get_code_table()
    unlimited_max = max(l for l, _ in unlimited.values())

    # the sample: each exponent 4 times, plus 4000 draws with the population's frequencies
    sample_exp = np.concatenate([np.repeat(exps_sym, 4),
                                 rng.choice(exps_sym, size=4000 - 4 * len(exps_sym),
                                            p=counts / counts.sum())])
    rng.shuffle(sample_exp)
    sm = rng.integers(0, 256, size=len(sample_exp), dtype=np.uint16)
    sbits = ((sm & 0x80) << 8) | (sample_exp.astype(np.uint16) << 7) | (sm & 0x7F)
    sample = bf16_from_bits(sbits).reshape(50, 80).contiguous()
    info = {"seed": 1104, "population_elements": int(n_pop),
            "population_counts": {int(e): int(c) for e, c in zip(exps_sym, counts)},
            "unlimited_max_code_len": int(unlimited_max),
            "codec_built_from": "population (9.2M elements, not stored); unit holds a sample"}
    return [sample], info, population


def make_byte_aligned_end():
    # total bits % 8 == 0 (no EOS code, no padding) and the last 64-bit window still holds a
    # code start (the clean case).
    def accept(T, L):
        last_start = T - int(L[-1])
        return T % 8 == 0 and last_start >= ((T - 1) // 64) * 64 and T // 8 < R.BLOCK_BYTES
    t, info = search("byte_aligned_end", list(range(1200, 1400)), (2000, 2600), 0.02, accept)
    return [t], info, None


def make_window_edge():
    # total bits % 8 == 0 and the last code crosses a 64-bit window boundary, so the last
    # window holds no code start (its gap field is only the zero padding).
    def accept(T, L):
        last_start = T - int(L[-1])
        return T % 8 == 0 and last_start < ((T - 1) // 64) * 64 and T // 8 < R.BLOCK_BYTES
    t, info = search("window_edge", list(range(1400, 1600)), (2000, 2600), 0.02, accept,
                     reorder=longest_last)
    return [t], info, None


def make_block_edge():
    # total bits % 8 == 0, the last code starts in block 0 and ends in block 1: the stream has
    # ceil(n_bytes/4096) == 2 blocks but no code starts in block 1, so the reference writes only
    # 2 output_positions entries (one per block with a code start, plus n_elements).
    def accept(T, L):
        last_start = T - int(L[-1])
        return T % 8 == 0 and T > R.BLOCK_BITS and last_start < R.BLOCK_BITS
    t, info = search("block_edge", list(range(1600, 2000)), (11500, 12800), 0.02, accept,
                     reorder=longest_last)
    return [t], info, None


def make_block_exact():
    # total bits == 32768: the stream is exactly one 4096-byte block, no EOS code.
    def accept(T, L):
        return T == R.BLOCK_BITS
    t, info = search("block_exact", list(range(2000, 2400)), (11500, 12800), 0.02, accept)
    return [t], info, None


def make_wide_exponents():
    rng = np.random.default_rng(1105)
    n = 40 * 64
    log2mag = rng.uniform(-60.0, 60.0, size=n)
    x = np.exp2(log2mag) * rng.choice([-1.0, 1.0], size=n)
    x = x.astype(np.float32)
    # a few exact zeros (both signs) and BF16 subnormals (exponent field 0, mantissa != 0)
    idx = rng.choice(n, size=24, replace=False)
    x[idx[:6]] = 0.0
    x[idx[6:9]] = -0.0
    t = torch.from_numpy(x).to(torch.bfloat16)
    bits = t.view(torch.int16).numpy().view(np.uint16).copy()
    sub = rng.integers(1, 128, size=15, dtype=np.uint16) | (rng.integers(0, 2, size=15, dtype=np.uint16) << 15)
    bits[idx[9:]] = sub
    t = bf16_from_bits(bits).reshape(40, 64).contiguous()
    assert exponents_of(t).max() < 240
    return [t], {"seed": 1105, "log2_range": [-60, 60], "zeros": 9, "subnormals": 15}, None


UNITS = [
    ("normal_single", make_normal_single),
    ("normal_multi", make_normal_multi),
    ("multi_block", make_multi_block),
    ("skewed_32bit", make_skewed_32bit),
    ("byte_aligned_end", make_byte_aligned_end),
    ("window_edge", make_window_edge),
    ("block_edge", make_block_edge),
    ("block_exact", make_block_exact),
    ("wide_exponents", make_wide_exponents),
]


# ----------------------------------------------------------------------------- independent checks

def check_unit(name, weights, r):
    """Check the reference output against the spec; return facts for the manifest."""
    table = r["table"]
    luts = r["luts"].numpy()
    enc = r["encoded"].numpy()
    sm = r["sign_mantissa"].numpy()
    op = r["output_positions"].numpy().astype(np.int64)
    gaps_bytes = r["gaps"].numpy()
    flat = torch.cat([w.flatten() for w in weights])
    exps = exponents_of(flat)
    n = len(exps)
    n_bytes = len(enc)
    n_blocks = math.ceil(n_bytes / R.BLOCK_BYTES)

    int_codes = {k: v for k, v in table.items() if isinstance(k, int)}
    eof = [v for k, v in table.items() if not isinstance(k, int)]
    eof_len = eof[0][0] if eof else None
    L = np.array([int_codes[int(e)][0] for e in exps], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(L)[:-1]])
    T = int(L.sum())
    max_len = max(l for l, _ in int_codes.values())
    assert max(l for l, _ in table.values()) <= 32, "code longer than 32 bits"
    assert n_bytes == (T + 7) // 8, (n_bytes, T)

    # 1. the stream: code bits MSB-first, then (if T % 8) the EOS code's leading bits
    bits = np.unpackbits(enc)
    rebuilt = []
    for e in exps:
        l, v = int_codes[int(e)]
        rebuilt.append(format(v, f"0{l}b"))
    s = "".join(rebuilt)
    assert "".join(map(str, bits[:T])) == s, "stream bits differ from code concatenation"
    tail = "".join(map(str, bits[T:]))
    if T % 8:
        el, ev = eof[0]
        eofs = format(ev, f"0{el}b")
        assert tail == (eofs + "0" * 8)[:len(tail)], "padding is not the EOS code prefix"

    # 2. last LUT row = code lengths
    for k, (l, _) in int_codes.items():
        assert luts[-1, k] == l

    # 3. LUT decode (spec 2.1), sequential over the whole stream
    padded = np.concatenate([enc, np.zeros(8, np.uint8)])
    pos = 0
    dec = np.empty(n, np.int64)
    for i in range(n):
        row = 0
        byte_i = pos // 8
        off = pos % 8
        steps = 0
        while True:
            word = (int(padded[byte_i]) << 8 | int(padded[byte_i + 1])) >> (8 - off) & 0xFF
            v = int(luts[row, word])
            if v < 240:
                break
            row = 256 - v
            byte_i += 1
            steps += 1
            assert steps < 4 and row < luts.shape[0] - 1
        dec[i] = v
        pos += int(luts[-1, v])
    assert (dec == exps).all(), "LUT decode mismatch"
    assert pos == T

    # 4. BF16 rebuilt from exponent + sign_mantissa
    w = ((sm.astype(np.uint16) & 0x80) << 8) | (dec.astype(np.uint16) << 7) | (sm.astype(np.uint16) & 0x7F)
    assert (w == flat.view(torch.int16).numpy().view(np.uint16)).all(), "BF16 rebuild mismatch"

    # 5. gaps (spec 2.2): first code start in each window that has one
    n_windows = R.THREADS_PER_BLOCK * n_blocks
    gb = np.unpackbits(gaps_bytes)
    assert len(gaps_bytes) == math.ceil(5 * n_windows / 8), (len(gaps_bytes), n_windows)
    gap = np.array([int("".join(map(str, gb[5 * t:5 * t + 5])), 2) for t in range(n_windows)])
    all_starts = starts if T % 8 == 0 else np.concatenate([starts, [T]])  # EOS code start
    win = all_starts // R.WINDOW_BITS
    first_in_win = {}
    for st, wi in zip(all_starts, win):
        first_in_win.setdefault(int(wi), int(st))
    stream_windows = math.ceil(n_bytes * 8 / R.WINDOW_BITS)
    windows_without_start = []
    for t in range(n_windows):
        if t in first_in_win:
            assert gap[t] == first_in_win[t] - R.WINDOW_BITS * t, (t, gap[t])
        else:
            assert gap[t] == 0
            if t < stream_windows:
                windows_without_start.append(t)

    # 6. output_positions (spec 2.3)
    blk = all_starts // R.BLOCK_BITS
    expect = []
    elem_of_start = np.concatenate([np.arange(n), [n]]) if T % 8 else np.arange(n)
    for b in range(n_blocks):
        hit = np.nonzero(blk == b)[0]
        if len(hit):
            expect.append(int(elem_of_start[hit[0]]))
    expect.append(n)
    assert list(op) == expect, (list(op), expect)
    assert (np.diff(op) >= 0).all() and op[-1] == n

    # 7. LUT entries no symbol code reaches (the reference fills them with the previous value)
    prefixes = [""]
    for k, (l, v) in int_codes.items():
        p = format(v, f"0{l}b")[:((l - 1) // 8) * 8]
        if p not in prefixes:
            prefixes.append(p)
    prefixes.sort(key=len)
    def reached_by(codes, p):
        reached = set()
        for (l, v) in codes:
            c = format(v, f"0{l}b")
            if not c.startswith(p):
                continue
            rest = c[len(p):]
            if len(rest) <= 8:
                lo = int(rest.ljust(8, "0"), 2)
                reached.update(range(lo, lo + (1 << (8 - len(rest)))))
            else:
                reached.add(int(rest[:8], 2))
        return reached

    stale = stale_eof = stale_ptr = 0
    stale_values = set()
    for pi, p in enumerate(prefixes):
        reached = reached_by(int_codes.values(), p)
        by_eof = reached_by(eof, p)
        for byte in range(256):
            if byte in reached:
                continue
            stale += 1
            stale_eof += byte in by_eof
            stale_ptr += int(luts[pi, byte]) >= 240
            stale_values.add(int(luts[pi, byte]))

    return dict(n_elements=n, n_bytes=n_bytes, n_luts=int(luts.shape[0]),
                n_output_positions=int(len(op)), n_blocks=n_blocks, total_code_bits=T,
                eos_emitted=bool(T % 8), eof_code_len=eof_len, max_code_len=int(max_len),
                n_symbols=len(int_codes), stale_lut_entries=int(stale),
                stale_lut_entries_in_eos_code_region=int(stale_eof),
                stale_lut_entries_holding_pointers=int(stale_ptr),
                stale_lut_values=sorted(stale_values),
                windows_without_code_start=windows_without_start,
                gaps_bytes=int(len(gaps_bytes)))


# ----------------------------------------------------------------------------- main

def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    versions = R.package_versions()
    manifest = {
        "generator": "scripts/reference/make_reference_units.py",
        "reference": "pip dfloat11 (dfloat11_utils.get_codec/get_32bit_codec/get_luts/encode_weights), "
                     "called as dfloat11.compress_model does",
        "packages": versions,
        "bytes_per_thread": R.BYTES_PER_THREAD,
        "threads_per_block": R.THREADS_PER_BLOCK,
        "units": [],
    }
    hdr = f"{'unit':<17} {'n_elem':>7} {'n_bytes':>7} {'n_luts':>6} {'len(op)':>7} {'ceil(nb/4096)':>13} {'max_len':>7} {'eos':>4} {'stale':>5} {'bpw':>7}"
    print(hdr)
    for name, maker in UNITS:
        weights, info, codec_source = maker()
        r = R.run_reference(REF, weights, codec_source=codec_source)
        if name == "skewed_32bit":
            unl = max(l for l, _ in r["unlimited_codec"].get_code_table().values())
            fin = max(l for l, _ in r["table"].values())
            assert unl > 32, f"unlimited code only {unl} bits: limiter not exercised"
            assert fin <= 32, fin
            assert "\n" in r["printed"] and r["printed"].strip(), "limiter printed nothing"
            info["limiter_iterations_printed"] = [ln for ln in r["printed"].splitlines()
                                                  if ln.strip() and ln.split()[0].isdigit()
                                                  and len(ln.split()) == 2][:10]
        facts = check_unit(name, weights, r)
        if name == "byte_aligned_end":
            assert facts["total_code_bits"] % 8 == 0 and not facts["windows_without_code_start"]
        if name == "window_edge":
            assert facts["total_code_bits"] % 8 == 0 and facts["windows_without_code_start"]
        if name == "block_edge":
            assert facts["n_output_positions"] == facts["n_blocks"], facts
        if name == "block_exact":
            assert facts["n_bytes"] == R.BLOCK_BYTES and not facts["eos_emitted"]
        if name == "normal_multi":
            assert r["split_positions"].numel() == len(weights) - 1 > 0

        tensors = {
            f"{name}.luts": r["luts"].contiguous(),
            f"{name}.encoded_exponent": r["encoded"].contiguous(),
            f"{name}.sign_mantissa": r["sign_mantissa"].contiguous(),
            f"{name}.output_positions": r["output_positions"].view(torch.uint8).contiguous(),
            f"{name}.gaps": r["gaps"].contiguous(),
            f"{name}.split_positions": r["split_positions"].contiguous(),
        }
        for i, w in enumerate(weights):
            assert w.dim() == 2 and w.dtype == torch.bfloat16
            tensors[f"{name}.original.{i}"] = w.contiguous()
        path = os.path.join(out, f"{name}.safetensors")
        # one metadata key only: safetensors writes several in a random order
        save_file(tensors, path, metadata={
            "generator": f"scripts/reference/make_reference_units.py, dfloat11=={versions['dfloat11']}"})
        os.chmod(path, 0o644)

        bpw = R.reference_bits_per_weight(r, facts["n_elements"])
        entry = dict(name=name, file=f"{name}.safetensors",
                     shapes=[list(w.shape) for w in weights],
                     split_positions=[int(x) for x in r["split_positions"].tolist()],
                     dtypes={k.split(".", 1)[1]: str(v.dtype).replace("torch.", "")
                             for k, v in tensors.items() if ".original." not in k},
                     bits_per_weight=round(bpw, 4),
                     bits_per_weight_incl_luts=round(
                         R.reference_bits_per_weight(r, facts["n_elements"], True), 4),
                     **facts, params=info)
        manifest["units"].append(entry)
        print(f"{name:<17} {facts['n_elements']:>7} {facts['n_bytes']:>7} {facts['n_luts']:>6} "
              f"{facts['n_output_positions']:>7} {facts['n_blocks']:>13} {facts['max_code_len']:>7} "
              f"{'yes' if facts['eos_emitted'] else 'no':>4} {facts['stale_lut_entries']:>5} {bpw:>7.3f}",
              flush=True)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print("packages:", json.dumps(versions))


if __name__ == "__main__":
    main()
