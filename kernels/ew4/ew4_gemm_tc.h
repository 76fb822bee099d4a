// SPDX-License-Identifier: Apache-2.0
// Fused decode-GEMM for ew4 weights on tensor cores, batches up to kEw4TcMaxBatch tokens:
// y = bf16(x) · wᵀ (+ bias), the weights decoded once per call in registers straight into the A
// fragments of mma.sync.m16n8k16 (BF16 in, FP32 accumulation), never written to memory.
//
// Operands. The weights are A (row-major M x K: M = output features = the rows of w, K = input
// features); the activations are B (K x N, N = tokens), rounded to BF16 first (as GemmBf16Cuda
// rounds them for cuBLAS); the accumulators C/D are M x N, FP32.
//
// Tiles. A CTA owns kEw4TcTileRows consecutive rows of w and the whole batch (one column tile of
// up to kEw4TcMaxBatch tokens), so each weight is decoded exactly once per call. Warp v of the
// CTA owns rows 16v .. 16v + 15 of the tile. The k range is walked one ew4 code block (64
// weights of every row of the tile, the unit the pipeline stages) at a time, and a block in four
// k16 steps: step s multiplies weights 16s .. 16s + 15 of the block. Within a step, lane l holds
// (q = l % 4, g = l / 4) the A words listed by Ew4TcFragRow/Ew4TcFragCol: weights 2q, 2q + 1,
// 2q + 8, 2q + 9 of the step for rows g and g + 8; their codes are the low (steps 0, 1) or high
// (steps 2, 3) nibbles of code bytes 16 (s % 2) + {2q, 2q + 1, 2q + 8, 2q + 9}, so a lane decodes
// a row's whole block from four 16-bit code loads (Ew4TcRowBlockWords). Words coded 0 are
// escapes, patched from the row's list before the multiply; weights past k or rows past n are 0.
//
// Split-K. Short grids (few row tiles) cut k into Ew4GemmTcSplits(n, k) slices of whole blocks;
// a slice's sums go to a workspace and a second kernel adds them in slice order, the bias last.
// The split depends on (n, k) only, so a token's outputs never depend on the batch around it.
//
// Summation order of output (token b, row j), which the CPU reference follows:
//   for each slice t in order: acc_t = 0; for each k16 step of the slice in increasing k:
//     acc_t = mma(A_step, B_step, acc_t)            (one m16n8k16 step: 16 products + acc)
//   y = ((acc_0 + acc_1) + acc_2) + ... (FP32 adds), then + bias (FP32 add of the BF16 value).
// What a k16 step rounds is hardware-defined: PTX leaves the internal order and rounding of the
// 16-term sum plus accumulator unspecified (tensor cores add aligned products with their own
// truncation). The CPU reference models a step as the products (exact in FP32: BF16 x BF16)
// and acc summed in double, in the order acc, product 0, ..., product 15, and rounded to FP32
// once. So it matches the GPU exactly in everything but the rounding inside a step: tiles,
// fragment mapping, decode, escapes, step order, slices, bias. The GPU test allows 2^-21 *
// sum |x w| per rounding (k / 16 steps, the slices, the bias) between the two; what is
// bit-exact on every GPU is the kernel fed ew4 tiles against the same kernel fed the raw BF16
// tiles (Bf16GemmTcCuda), because both run identical mma sequences on identical registers. On
// the CPU, the reference on ew4 weights is bit-identical to the reference on their raw BF16
// (tests/kernels/ew4/ew4_gemm_tc_test.cc).
#pragma once

#include <cstdint>

#include "kernels/common/host_device.h"
#include "kernels/ew4/ew4_format.h"

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

inline constexpr int64_t kEw4TcMaxBatch = 256;  // tokens one CTA column tile covers
// 8 warps of 16 rows: 128 rows of w per CTA share each staged tile of activations, which at
// 256 tokens is 32 KB per 64-weight block against the rows' 12 KB of ew4.
inline constexpr int kEw4TcWarps = 8;
inline constexpr int kEw4TcWarpRows = 16;                           // the mma's M
inline constexpr int kEw4TcTileRows = kEw4TcWarps * kEw4TcWarpRows;  // rows of w per CTA
inline constexpr int kEw4TcStepK = 16;                              // the mma's K
inline constexpr int kEw4TcStepsPerBlock = kEw4BlockWeights / kEw4TcStepK;
inline constexpr int kEw4TcFragWords = 8;  // BF16 words of A per lane per step

// Row (0-15) and k (0-15) within a 16 x 16 A tile of word e (0-7) of lane `lane`'s A fragment
// (registers a0..a3 hold words 0-1, 2-3, 4-5, 6-7; the PTX ISA's m16n8k16 .bf16 layout).
DF11_HD int Ew4TcFragRow(int lane, int e) { return (lane >> 2) + ((e >> 1) & 1) * 8; }
DF11_HD int Ew4TcFragCol(int lane, int e) { return (lane & 3) * 2 + (e & 1) + (e >> 2) * 8; }

// A 16-bit little-endian load from a 2-byte aligned address.
DF11_HD uint32_t Ew4TcLoad16(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
  return *reinterpret_cast<const uint16_t*>(p);
#else
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8;
#endif
}

// Weight i (0-3) of a k16 step for lane quad position q (0-3): 2q, 2q + 1, 2q + 8, 2q + 9.
DF11_HD int Ew4TcWordColumn(int step, int q, int i) {
  return 16 * step + 2 * q + (i & 1) + (i >> 1) * 8;
}

// The sixteen A words of one row for a whole 64-weight block, for lane quad position q, from
// the block's 32 code bytes and 64 sign|mantissa bytes (both 2-byte aligned): pairs[2s + p]
// holds weights Ew4TcWordColumn(s, q, 2p) and (s, q, 2p + 1) of k16 step s, the lower column in
// the low half, as mma.sync takes them. Four 16-bit loads of codes serve all four steps (steps
// 0, 1 in the low nibbles, 2, 3 in the high ones), eight of sign|mantissa bytes. Code-0 words
// come out as 0 with bit 4s + i of the returned mask set, for the caller to patch (or leave 0
// past the matrix).
DF11_HD uint32_t Ew4TcRowBlockWords(const uint8_t* block_codes,
                                    const uint8_t* block_sign_mantissa, int32_t window_start,
                                    int q, uint32_t (&pairs)[8]) {
  uint32_t codes[2][2];  // [step % 2][p]
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int h = 0; h < 4; ++h) {
    codes[h >> 1][h & 1] = Ew4TcLoad16(block_codes + 16 * (h >> 1) + 2 * q + 8 * (h & 1));
  }
  uint32_t escapes = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int s = 0; s < 4; ++s) {
#if defined(__CUDACC__)
#pragma unroll
#endif
    for (int p = 0; p < 2; ++p) {
      const uint32_t c16 = codes[s & 1][p] >> (s >= 2 ? 4 : 0);
      const uint32_t sm16 = Ew4TcLoad16(block_sign_mantissa + 16 * s + 2 * q + 8 * p);
      uint32_t pair = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
      for (int e = 0; e < 2; ++e) {
        const uint32_t code = (c16 >> (8 * e)) & 0xFu;
        const uint32_t word =
            code != 0 ? Ew4Combine(window_start, code, (sm16 >> (8 * e)) & 0xFFu) : 0u;
        pair |= word << (16 * e);
        escapes |= (code == 0 ? 1u : 0u) << (4 * s + 2 * p + e);
      }
      pairs[2 * s + p] = pair;
    }
  }
  return escapes;
}

// Escaped weight `col` of row j of a validated view: its BF16 value from the row's list.
DF11_HD uint16_t Ew4EscapeValue(const Ew4View& w, int64_t j, uint32_t col) {
  uint32_t lo = w.escape_offsets[j], hi = w.escape_offsets[j + 1];
  while (lo < hi) {
    const uint32_t mid = (lo + hi) / 2;
    if (w.escape_columns[mid] < col) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return w.escape_values[lo];
}

// k slices for an (n, k) matrix (whole 64-weight blocks, every slice non-empty): enough CTAs
// to fill an H100 about twice when the row tiles alone would not, at least 4 blocks per slice.
int Ew4GemmTcSplits(int64_t n, int64_t k);
// First block of slice t (t = splits gives the block count).
int64_t Ew4GemmTcSliceBegin(int64_t k, int splits, int t);
int64_t Ew4GemmTcWorkspaceFloats(int64_t m, int64_t n, int64_t k);

// The A fragment of lane `lane` for the 16 x 16 tile at (row0, col0) (row0 a multiple of 16,
// col0 of 16) of w (n, k), decoded as the kernel decodes it: the block staged into a
// zero-padded buffer, Ew4TcRowBlockWords, escapes patched. Words in Ew4TcFragRow/Col order.
void Ew4TcFragmentRef(const Ew4View& w, int64_t row0, int64_t col0, int lane,
                      uint16_t (&words)[kEw4TcFragWords]);
// The same tile read from raw BF16 weights w (n, k): 0 outside the matrix.
void Bf16TcFragmentRef(const uint16_t* w, int64_t n, int64_t k, int64_t row0, int64_t col0,
                       int lane, uint16_t (&words)[kEw4TcFragWords]);

// The CPU reference of the kernel's order (above). x (m, k) FP32, w (n, k) ew4 (host,
// validated) or raw BF16, bias (n) BF16 or null, y (m, n). Requires 1 <= m <= kEw4TcMaxBatch.
// Thread-safe; results do not depend on `threads` or m.
void Ew4GemmTcRef(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                  int threads);
void Bf16GemmTcRef(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t m,
                   int64_t n, int64_t k, int threads);

#if DF11_WITH_CUDA
// Device pointers; w a device view (Ew4DeviceBuffer). x_bf16: m * k BF16 words of workspace
// (x rounded); workspace: Ew4GemmTcWorkspaceFloats(m, n, k) floats (0 when one slice). No
// allocation or host synchronisation: capturable in a CUDA graph. Requires an sm_90 device and
// 1 <= m <= kEw4TcMaxBatch. Bf16GemmTcCuda is the same kernel on raw BF16 tiles.
void Ew4GemmTcCuda(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                   uint16_t* x_bf16, float* workspace, cudaStream_t stream);
void Bf16GemmTcCuda(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t m,
                    int64_t n, int64_t k, uint16_t* x_bf16, float* workspace,
                    cudaStream_t stream);
// Every A fragment the kernel decodes for w, written as it holds them in registers (staged,
// decoded, escapes patched), for the tests: words[((t * steps + s) * 32 + lane) * 8 + e] for
// 16-row tile t < ceil(n / 16) and k16 step s < Ew4TcFragmentSteps(k), word e as
// Ew4TcFragRow/Col. Ew4TcFragmentRef gives the same words on the CPU.
int64_t Ew4TcFragmentSteps(int64_t k);
void Ew4TcFragmentsCuda(const Ew4View& w, uint16_t* words, cudaStream_t stream);
void Bf16TcFragmentsCuda(const uint16_t* w, int64_t n, int64_t k, uint16_t* words,
                         cudaStream_t stream);
#endif

}  // namespace df11
