// SPDX-License-Identifier: Apache-2.0
// The CUDA fused decode-GEMV (Ew4GemvCuda) and its twin on raw BF16 (Bf16GemvOrderedCuda): one
// kernel template, two weight sources, so the two give bit-identical outputs for the same weights.
// A warp computes one row's slice of k; lane l takes half l % 2 of each 64-weight block
// l / 2, l / 2 + 16, ...: with one 16-byte load of codes it gets the codes of weights
// 16h .. 16h + 15 (low nibbles) and 32 + 16h .. 32 + 16h + 15 (high nibbles), decodes them in
// registers (escapes looked up in the row's list, a branch taken rarely) and adds them into its
// per-token sums in that fixed order. The warp then sums its lanes with a fixed butterfly and the
// slice's sums go to the workspace; Ew4SumSlices adds the slices in order and the bias last.
// Also Ew4DecodeRowsCuda (decode to BF16, one thread per weight).
#include <cuda_runtime_api.h>

#include <algorithm>

#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_gemv.h"

namespace df11 {
namespace {

constexpr int kWarpsPerCta = 8;  // rows per CTA
constexpr int kThreads = 32 * kWarpsPerCta;
constexpr int kBlocksPerIteration = 16;  // 64-weight blocks a warp covers per step
constexpr int kTargetCtas = 4 * 132;     // enough to fill an H100's SMs several times
constexpr int64_t kMinBlocksPerSlice = 8;

__device__ __forceinline__ float Bf16Bits(uint32_t bits) { return __uint_as_float(bits << 16); }

// Escaped weight `col` of row j: its value from the row's (column-sorted) list.
__device__ uint16_t EscapeAt(const Ew4View& w, int64_t j, uint32_t col) {
  uint32_t lo = w.escape_offsets[j], hi = w.escape_offsets[j + 1];
  while (lo < hi) {
    const uint32_t mid = (lo + hi) / 2;
    if (w.escape_columns[mid] < col) lo = mid + 1; else hi = mid;
  }
  return w.escape_values[lo];
}

// Weights 16h + i (i < 16) and 32 + 16h + i of block `blk` of row j as FP32 in v[i], v[16 + i];
// 0 past k.
struct Ew4Source {
  Ew4View w;
  __device__ void Fetch(int64_t j, int64_t blk, int h, float (&v)[32]) const {
    const int64_t k = w.cols;
    const uint4 c4 = *reinterpret_cast<const uint4*>(w.codes + j * Ew4RowCodeBytes(k) +
                                                     blk * kEw4BlockCodeBytes + 16 * h);
    const uint32_t words[4] = {c4.x, c4.y, c4.z, c4.w};
    const uint8_t* sm = w.sign_mantissa + j * k;
    const int64_t base = blk * kEw4BlockWeights + 16 * h;
    const bool full = (k % 16) == 0 && base + 48 <= k;  // 16-byte aligned, all in range
    uint8_t s[32];
    if (full) {
      *reinterpret_cast<uint4*>(s) = __ldg(reinterpret_cast<const uint4*>(sm + base));
      *reinterpret_cast<uint4*>(s + 16) = __ldg(reinterpret_cast<const uint4*>(sm + base + 32));
    } else {
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        s[i] = base + i < k ? sm[base + i] : 0;
        s[16 + i] = base + 32 + i < k ? sm[base + 32 + i] : 0;
      }
    }
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const uint32_t byte = (words[(i & 15) / 4] >> (8 * (i & 3))) & 0xFFu;
      const uint32_t code = i < 16 ? byte & 0xFu : byte >> 4;
      const int64_t p = base + (i < 16 ? i : 16 + i);
      uint32_t bits = 0;
      if (code != 0) {
        bits = Ew4Combine(w.window_start, code, s[i]);
      } else if (p < k) {
        bits = EscapeAt(w, j, static_cast<uint32_t>(p));
      }
      v[i] = Bf16Bits(bits);
    }
  }
};

struct Bf16Source {
  const uint16_t* w;
  int64_t k;
  __device__ void Fetch(int64_t j, int64_t blk, int h, float (&v)[32]) const {
    const int64_t base = blk * kEw4BlockWeights + 16 * h;
    const uint16_t* row = w + j * k;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int64_t p = base + (i < 16 ? i : 16 + i);
      v[i] = p < k ? Bf16Bits(__ldg(row + p)) : 0.0f;
    }
  }
};

// Grid (ceil(n / kWarpsPerCta), splits). workspace[(s * M + b) * n + j]: slice s of row j, token b.
template <int M, typename Source>
__global__ void __launch_bounds__(kThreads) GemvSlices(Source src, const float* __restrict__ x,
                                                       int64_t n, int64_t k,
                                                       int64_t blocks_per_slice,
                                                       float* __restrict__ workspace) {
  const int lane = threadIdx.x & 31;
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kWarpsPerCta + threadIdx.x / 32;
  if (j >= n) return;
  const int64_t n_blocks = (k + kEw4BlockWeights - 1) / kEw4BlockWeights;
  const int64_t b0 = blockIdx.y * blocks_per_slice;
  const int64_t b1 = min(n_blocks, b0 + blocks_per_slice);
  const int h = lane & 1;
  float acc[M];
#pragma unroll
  for (int b = 0; b < M; ++b) acc[b] = 0.0f;
  for (int64_t blk = b0 + lane / 2; blk < b1; blk += kBlocksPerIteration) {
    float v[32];
    src.Fetch(j, blk, h, v);
    const int64_t base = blk * kEw4BlockWeights + 16 * h;
#pragma unroll
    for (int i = 0; i < 32; ++i) {
      const int64_t p = base + (i < 16 ? i : 16 + i);
      if (p < k) {
#pragma unroll
        for (int b = 0; b < M; ++b) acc[b] = fmaf(v[i], __ldg(x + b * k + p), acc[b]);
      }
    }
  }
#pragma unroll
  for (int b = 0; b < M; ++b) {
#pragma unroll
    for (int width = 16; width > 0; width /= 2) {
      acc[b] += __shfl_xor_sync(0xFFFFFFFFu, acc[b], width);
    }
  }
  if (lane == 0) {
#pragma unroll
    for (int b = 0; b < M; ++b) workspace[(blockIdx.y * M + b) * n + j] = acc[b];
  }
}

// y[b * n + j] = the slices in order, then the bias.
__global__ void SumSlices(const float* __restrict__ workspace, const uint16_t* __restrict__ bias,
                          float* __restrict__ y, int64_t m, int64_t n, int splits) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * n) return;
  const int64_t b = i / n, j = i % n;
  float sum = workspace[b * n + j];
  for (int s = 1; s < splits; ++s) sum += workspace[(s * m + b) * n + j];
  if (bias != nullptr) sum += Bf16Bits(bias[j]);
  y[i] = sum;
}

int64_t BlocksPerSlice(int64_t k, int splits) {
  const int64_t n_blocks = (k + kEw4BlockWeights - 1) / kEw4BlockWeights;
  return std::max<int64_t>(1, (n_blocks + splits - 1) / splits);
}

template <typename Source>
void Launch(const Source& src, const float* x, const uint16_t* bias, float* y, int64_t m,
            int64_t n, int64_t k, float* workspace, cudaStream_t stream) {
  DF11_CHECK(m >= 1 && m <= kEw4GemvMaxBatch);
  if (n == 0) return;
  const int splits = Ew4GemvSplits(n, k);
  const int64_t per_slice = BlocksPerSlice(k, splits);
  const dim3 grid(static_cast<unsigned>((n + kWarpsPerCta - 1) / kWarpsPerCta),
                  static_cast<unsigned>(splits));
  switch (m) {
#define DF11_EW4_CASE(M)                                                                   \
  case M:                                                                                  \
    GemvSlices<M><<<grid, kThreads, 0, stream>>>(src, x, n, k, per_slice, workspace); \
    break;
    DF11_EW4_CASE(1) DF11_EW4_CASE(2) DF11_EW4_CASE(3) DF11_EW4_CASE(4)
    DF11_EW4_CASE(5) DF11_EW4_CASE(6) DF11_EW4_CASE(7) DF11_EW4_CASE(8)
#undef DF11_EW4_CASE
  }
  DF11_CUDA_CHECK_LAUNCH();
  const int64_t outputs = m * n;
  SumSlices<<<static_cast<unsigned>((outputs + 255) / 256), 256, 0, stream>>>(workspace, bias, y,
                                                                              m, n, splits);
  DF11_CUDA_CHECK_LAUNCH();
}

__global__ void DecodeRows(Ew4View w, int64_t row_begin, int64_t count, uint16_t* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const int64_t j = row_begin + i / w.cols, p = i % w.cols;
  const uint32_t code = Ew4CodeAt(w.codes + j * Ew4RowCodeBytes(w.cols), p);
  out[i] = code != 0 ? Ew4Combine(w.window_start, code, w.sign_mantissa[j * w.cols + p])
                     : EscapeAt(w, j, static_cast<uint32_t>(p));
}

}  // namespace

int Ew4GemvSplits(int64_t n, int64_t k) {
  const int64_t row_ctas = std::max<int64_t>(1, (n + kWarpsPerCta - 1) / kWarpsPerCta);
  const int64_t n_blocks = (k + kEw4BlockWeights - 1) / kEw4BlockWeights;
  const int64_t wanted = (kTargetCtas + row_ctas - 1) / row_ctas;
  const int64_t most = std::max<int64_t>(1, n_blocks / kMinBlocksPerSlice);
  const int64_t splits = std::clamp<int64_t>(wanted, 1, most);
  // Every slice non-empty: the last one starts before the end.
  const int64_t per = BlocksPerSlice(k, static_cast<int>(splits));
  return static_cast<int>(std::max<int64_t>(1, (n_blocks + per - 1) / per));
}

int64_t Ew4GemvWorkspaceFloats(int64_t m, int64_t n, int64_t k) {
  return static_cast<int64_t>(Ew4GemvSplits(n, k)) * m * n;
}

void Ew4GemvCuda(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                 float* workspace, cudaStream_t stream) {
  Launch(Ew4Source{w}, x, bias, y, m, w.rows, w.cols, workspace, stream);
}

void Bf16GemvOrderedCuda(const float* x, const uint16_t* w, const uint16_t* bias, float* y,
                         int64_t m, int64_t n, int64_t k, float* workspace, cudaStream_t stream) {
  Launch(Bf16Source{w, k}, x, bias, y, m, n, k, workspace, stream);
}

void Ew4DecodeRowsCuda(const Ew4View& view, int64_t row_begin, int64_t row_end, uint16_t* out,
                       cudaStream_t stream) {
  const int64_t count = (row_end - row_begin) * view.cols;
  if (count <= 0) return;
  DecodeRows<<<static_cast<unsigned>((count + 255) / 256), 256, 0, stream>>>(view, row_begin,
                                                                            count, out);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
