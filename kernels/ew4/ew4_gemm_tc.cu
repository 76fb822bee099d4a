// SPDX-License-Identifier: Apache-2.0
// The tensor-core decode-GEMM (ew4_gemm_tc.h) for sm_90: Ew4GemmTcCuda and its twin on raw BF16
// tiles, Bf16GemmTcCuda (one kernel template, two tile sources, so the two give bit-identical
// outputs whatever the tensor cores' internal rounding).
// A CTA of kEw4TcWarps warps owns kEw4TcTileRows (128) rows of w and the whole batch (up to 256 tokens, padded to
// a multiple of 8: the template's NT n8 tiles). A kStages-deep cp.async ring stages, per 64-weight
// block of k, the tile's weights (ew4: 64 sign|mantissa bytes and 32 code bytes per row; raw:
// 64 BF16 words per row) and the batch's BF16 activations, zero-filled past k, n and m. Each
// warp decodes its 16 rows' A fragments for the block's four k16 steps in registers
// (Ew4TcRowBlockWords, escapes patched from the row's list before the multiply), then issues,
// per step, one mma.sync.m16n8k16 per n8 tile of the batch: every weight is decoded once per
// call. Slices of k
// (Ew4GemmTcSplits) go to the workspace and SumSlices adds them in order, the bias last; with
// one slice the kernel writes y (+ bias) itself.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/ew4/ew4_gemm_tc.h"

namespace df11 {
namespace {

constexpr int kThreads = 32 * kEw4TcWarps;
constexpr int kStages = 4;
// Shared-memory row strides, padded so that a warp's fragment reads spread over the banks and
// every row starts on 16 bytes (cp.async's alignment).
constexpr int kXStride = kEw4BlockWeights + 8;           // BF16 words per token
constexpr int kRawStride = kEw4BlockWeights + 8;         // BF16 words per raw weight row
constexpr int kSmStride = kEw4BlockWeights + 16;         // sign|mantissa bytes per ew4 row
constexpr int kCodeStride = kEw4BlockCodeBytes + 16;     // code bytes per ew4 row

__device__ __forceinline__ float Bf16Bits(uint32_t bits) { return __uint_as_float(bits << 16); }

__device__ __forceinline__ uint32_t SharedAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// `valid` (0-16) bytes from global `src` into 16 shared bytes at `dst`, zero-filled: cp.async
// when src is 16-byte aligned, plain loads otherwise (rows of a k not a multiple of 8 or 16).
__device__ __forceinline__ void Copy16(void* dst, const void* src, int valid) {
  if (valid > 0 && (reinterpret_cast<uintptr_t>(src) & 15) == 0) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SharedAddress(dst)),
                 "l"(src), "r"(valid));
  } else {
    uint8_t* d = static_cast<uint8_t*>(dst);
    const uint8_t* s = static_cast<const uint8_t*>(src);
#pragma unroll
    for (int i = 0; i < 16; ++i) d[i] = i < valid ? s[i] : 0;
  }
}

__device__ __forceinline__ void CommitGroup() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void WaitGroup() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// d += A (16 x 16, row) · B (16 x 8, col), BF16 in, FP32 accumulators.
__device__ __forceinline__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ int Valid(int64_t remaining) {
  return static_cast<int>(remaining < 0 ? 0 : remaining > 16 ? 16 : remaining);
}

// Escaped weight `col` of row j, in the low half (not inlined: the branch to it is rare).
__device__ __noinline__ uint32_t EscapedWord(const Ew4View& w, int64_t j, int64_t col) {
  return Ew4EscapeValue(w, j, static_cast<uint32_t>(col));
}

// ew4 tiles: per stage, rows' sign|mantissa bytes, then their code bytes.
struct Ew4Tiles {
  Ew4View w;
  static constexpr int kStageBytes = kEw4TcTileRows * (kSmStride + kCodeStride);

  __device__ void Load(uint8_t* stage, int64_t row0, int64_t blk) const {
    uint8_t* codes = stage + kEw4TcTileRows * kSmStride;
    const int64_t k = w.cols, base = blk * kEw4BlockWeights;
    for (int c = threadIdx.x; c < kEw4TcTileRows * 6; c += kThreads) {
      const int r = c / 6, part = c % 6;
      const int64_t j = row0 + r;
      if (part < 4) {
        const int valid = j < w.rows ? Valid(k - base - 16 * part) : 0;
        Copy16(stage + r * kSmStride + 16 * part,
               valid > 0 ? w.sign_mantissa + j * k + base + 16 * part : nullptr, valid);
      } else {
        const int at = 16 * (part - 4);
        const int valid = j < w.rows ? 16 : 0;
        Copy16(codes + r * kCodeStride + at,
               valid > 0 ? w.codes + j * Ew4RowCodeBytes(k) + blk * kEw4BlockCodeBytes + at
                         : nullptr,
               valid);
      }
    }
  }

  // Lane `lane`'s A fragments of warp `warp`'s 16 rows for the four k16 steps of block `blk`:
  // a[s] holds registers a0-a3 of step s.
  __device__ void Fragments(const uint8_t* stage, int64_t row0, int64_t blk, int warp, int lane,
                            uint32_t (&a)[kEw4TcStepsPerBlock][4]) const {
    const uint8_t* codes = stage + kEw4TcTileRows * kSmStride;
    const int q = lane & 3;
    uint32_t rows[2][8];  // rows g and g + 8: pairs[2s + p] of Ew4TcRowBlockWords
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = warp * kEw4TcWarpRows + (lane >> 2) + 8 * half;
      const uint32_t escapes = Ew4TcRowBlockWords(codes + r * kCodeStride, stage + r * kSmStride,
                                                  w.window_start, q, rows[half]);
      const int64_t j = row0 + r;
      if (escapes != 0 && j < w.rows) {  // rare: look the weights up in the row's list
#pragma unroll
        for (int bit = 0; bit < 16; ++bit) {  // unrolled: register indices stay constant
          const int s = bit >> 2, i = bit & 3;
          const int64_t col = blk * kEw4BlockWeights + Ew4TcWordColumn(s, q, i);
          if (((escapes >> bit) & 1u) != 0 && col < w.cols) {
            rows[half][2 * s + (i >> 1)] |= EscapedWord(w, j, col) << (16 * (i & 1));
          }
        }
      }
    }
#pragma unroll
    for (int s = 0; s < kEw4TcStepsPerBlock; ++s) {
      a[s][0] = rows[0][2 * s];
      a[s][1] = rows[1][2 * s];
      a[s][2] = rows[0][2 * s + 1];
      a[s][3] = rows[1][2 * s + 1];
    }
  }
};

// Raw BF16 tiles: the same fragments read straight from the staged words.
struct Bf16Tiles {
  const uint16_t* w;
  int64_t n, k;
  static constexpr int kStageBytes = kEw4TcTileRows * kRawStride * 2;

  __device__ void Load(uint8_t* stage, int64_t row0, int64_t blk) const {
    const int64_t base = blk * kEw4BlockWeights;
    for (int c = threadIdx.x; c < kEw4TcTileRows * 8; c += kThreads) {
      const int r = c / 8, part = c % 8;
      const int64_t j = row0 + r;
      const int valid = j < n ? Valid(2 * (k - base - 8 * part)) : 0;
      Copy16(stage + 2 * (r * kRawStride + 8 * part),
             valid > 0 ? w + j * k + base + 8 * part : nullptr, valid);
    }
  }

  __device__ void Fragments(const uint8_t* stage, int64_t, int64_t, int warp, int lane,
                            uint32_t (&a)[kEw4TcStepsPerBlock][4]) const {
    const uint16_t* words = reinterpret_cast<const uint16_t*>(stage);
    const int r = warp * kEw4TcWarpRows + (lane >> 2);
    auto pair = [&](int row, int col) {
      return *reinterpret_cast<const uint32_t*>(words + row * kRawStride + col);
    };
#pragma unroll
    for (int s = 0; s < kEw4TcStepsPerBlock; ++s) {
      const int c = kEw4TcStepK * s + 2 * (lane & 3);
      a[s][0] = pair(r, c);
      a[s][1] = pair(r + 8, c);
      a[s][2] = pair(r, c + 8);
      a[s][3] = pair(r + 8, c + 8);
    }
  }
};

// The batch's activations of block `blk` (tokens padded to `tokens` with zeros).
__device__ void LoadX(uint16_t* stage, const uint16_t* __restrict__ xb, int64_t m, int64_t k,
                      int64_t blk, int tokens) {
  const int64_t base = blk * kEw4BlockWeights;
  for (int c = threadIdx.x; c < tokens * 8; c += kThreads) {
    const int b = c / 8, part = c % 8;
    const int valid = b < m ? Valid(2 * (k - base - 8 * part)) : 0;
    Copy16(stage + b * kXStride + 8 * part, valid > 0 ? xb + b * k + base + 8 * part : nullptr,
           valid);
  }
}

template <int NT, typename Tiles>
__host__ __device__ constexpr int StageBytes() {
  return Tiles::kStageBytes + 8 * NT * kXStride * 2;
}

// Grid (ceil(n / kEw4TcTileRows), splits). With one slice `out` is y (m, n) and the bias is
// added here; else out[(s * m + b) * n + j] is slice s's sum for token b, row j.
template <int NT, typename Tiles>
__global__ void __launch_bounds__(kThreads)
    TcGemm(Tiles tiles, const uint16_t* __restrict__ xb, int64_t m, int64_t n, int64_t k,
           int splits, int64_t blocks_per_slice, const uint16_t* __restrict__ bias,
           float* __restrict__ out) {
  extern __shared__ __align__(16) uint8_t smem[];
  constexpr int kStage = StageBytes<NT, Tiles>();
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kEw4TcTileRows;
  const int64_t n_blocks = (k + kEw4BlockWeights - 1) / kEw4BlockWeights;
  const int64_t first = static_cast<int64_t>(blockIdx.y) * blocks_per_slice;
  const int64_t last = min(n_blocks, first + blocks_per_slice);
  const int64_t count = last > first ? last - first : 0;
  float acc[NT][4];
#pragma unroll
  for (int t = 0; t < NT; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
  auto load = [&](int64_t i) {
    uint8_t* stage = smem + (i % kStages) * kStage;
    tiles.Load(stage, row0, first + i);
    LoadX(reinterpret_cast<uint16_t*>(stage + Tiles::kStageBytes), xb, m, k, first + i, 8 * NT);
  };
#pragma unroll
  for (int i = 0; i < kStages - 1; ++i) {
    if (i < count) load(i);
    CommitGroup();
  }
  for (int64_t i = 0; i < count; ++i) {
    WaitGroup<kStages - 2>();  // stage i has landed (this thread's copies) ...
    __syncthreads();           // ... everyone's, and stage i - 1 is no longer read
    if (i + kStages - 1 < count) load(i + kStages - 1);
    CommitGroup();
    const uint8_t* stage = smem + (i % kStages) * kStage;
    const uint16_t* xs = reinterpret_cast<const uint16_t*>(stage + Tiles::kStageBytes);
    uint32_t a[kEw4TcStepsPerBlock][4];
    tiles.Fragments(stage, row0, first + i, warp, lane, a);
#pragma unroll
    for (int step = 0; step < kEw4TcStepsPerBlock; ++step) {
      const uint16_t* x0 = xs + (lane >> 2) * kXStride + kEw4TcStepK * step + 2 * (lane & 3);
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        if (8 * t >= m) break;  // warp-uniform: tiles past the batch hold only zeros
        const uint16_t* xt = x0 + 8 * t * kXStride;
        Mma(acc[t], a[step], *reinterpret_cast<const uint32_t*>(xt),
            *reinterpret_cast<const uint32_t*>(xt + 8));
      }
    }
  }
  const int g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int t = 0; t < NT; ++t) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int64_t j = row0 + warp * kEw4TcWarpRows + g + 8 * (e >> 1);
      const int64_t b = 8 * t + 2 * q + (e & 1);
      if (j >= n || b >= m) continue;
      if (splits == 1) {
        out[b * n + j] = bias != nullptr ? acc[t][e] + Bf16Bits(bias[j]) : acc[t][e];
      } else {
        out[(blockIdx.y * m + b) * n + j] = acc[t][e];
      }
    }
  }
}

// y[b * n + j] = the slices in order, then the bias.
__global__ void SumSlices(const float* __restrict__ workspace, const uint16_t* __restrict__ bias,
                          float* __restrict__ y, int64_t m, int64_t n, int splits) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= m * n) return;
  float sum = workspace[i];
  for (int s = 1; s < splits; ++s) sum += workspace[s * m * n + i];
  if (bias != nullptr) sum += Bf16Bits(bias[i % n]);
  y[i] = sum;
}

__global__ void RoundToBf16(const float* __restrict__ x, uint16_t* __restrict__ xb, int64_t count) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < count) xb[i] = FloatToBf16(x[i]);
}

// One row tile per CTA along x, one block per CTA along y: each warp writes its lanes'
// fragments of the block's four steps, as TcGemm would hold them.
template <typename Tiles>
__global__ void __launch_bounds__(kThreads)
    DumpFragments(Tiles tiles, int64_t n, int64_t k, uint16_t* __restrict__ words) {
  extern __shared__ __align__(16) uint8_t smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kEw4TcTileRows, blk = blockIdx.y;
  tiles.Load(smem, row0, blk);
  CommitGroup();
  WaitGroup<0>();
  __syncthreads();
  const int64_t tile = row0 / kEw4TcWarpRows + warp;
  if (tile * kEw4TcWarpRows >= n) return;
  const int64_t steps = ((k + kEw4BlockWeights - 1) / kEw4BlockWeights) * kEw4TcStepsPerBlock;
  uint32_t a[kEw4TcStepsPerBlock][4];
  tiles.Fragments(smem, row0, blk, warp, lane, a);
  for (int step = 0; step < kEw4TcStepsPerBlock; ++step) {
    uint16_t* out = words + ((tile * steps + blk * kEw4TcStepsPerBlock + step) * 32 + lane) * 8;
    for (int e = 0; e < kEw4TcFragWords; ++e) {
      // Word e sits in register a[e / 2]: low half for even e.
      out[e] = static_cast<uint16_t>(a[step][e >> 1] >> (16 * (e & 1)));
    }
  }
}

template <typename Tiles>
void LaunchDump(const Tiles& tiles, int64_t n, int64_t k, uint16_t* words, cudaStream_t stream) {
  const int64_t blocks = (k + kEw4BlockWeights - 1) / kEw4BlockWeights;
  if (n == 0 || blocks == 0) return;
  const dim3 grid(static_cast<unsigned>((n + kEw4TcTileRows - 1) / kEw4TcTileRows),
                  static_cast<unsigned>(blocks));
  DumpFragments<Tiles><<<grid, kThreads, Tiles::kStageBytes, stream>>>(tiles, n, k, words);
  DF11_CUDA_CHECK_LAUNCH();
}

template <int NT, typename Tiles>
void LaunchTiles(const Tiles& tiles, const uint16_t* xb, const uint16_t* bias, float* out,
                 int64_t m, int64_t n, int64_t k, int splits, int64_t per_slice,
                 cudaStream_t stream) {
  constexpr int kSmem = kStages * StageBytes<NT, Tiles>();
  static_assert(kSmem <= 227 * 1024, "the ring must fit an sm_90 SM's shared memory");
  DF11_CUDA_CHECK(cudaFuncSetAttribute(TcGemm<NT, Tiles>,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  const dim3 grid(static_cast<unsigned>((n + kEw4TcTileRows - 1) / kEw4TcTileRows),
                  static_cast<unsigned>(splits));
  TcGemm<NT, Tiles><<<grid, kThreads, kSmem, stream>>>(tiles, xb, m, n, k, splits, per_slice,
                                                        bias, out);
  DF11_CUDA_CHECK_LAUNCH();
}

template <typename Tiles>
void Launch(const Tiles& tiles, const float* x, const uint16_t* bias, float* y, int64_t m,
            int64_t n, int64_t k, uint16_t* x_bf16, float* workspace, cudaStream_t stream) {
  DF11_CHECK(m >= 1 && m <= kEw4TcMaxBatch);
  if (n == 0) return;
  if (m * k > 0) {
    RoundToBf16<<<static_cast<unsigned>((m * k + 255) / 256), 256, 0, stream>>>(x, x_bf16, m * k);
    DF11_CUDA_CHECK_LAUNCH();
  }
  const int splits = Ew4GemmTcSplits(n, k);
  const int64_t per_slice = splits > 1 ? Ew4GemmTcSliceBegin(k, splits, 1) : (k + 63) / 64;
  float* out = splits == 1 ? y : workspace;
  if (m <= 8) {
    LaunchTiles<1>(tiles, x_bf16, bias, out, m, n, k, splits, per_slice, stream);
  } else if (m <= 32) {
    LaunchTiles<4>(tiles, x_bf16, bias, out, m, n, k, splits, per_slice, stream);
  } else if (m <= 64) {
    LaunchTiles<8>(tiles, x_bf16, bias, out, m, n, k, splits, per_slice, stream);
  } else if (m <= 128) {
    LaunchTiles<16>(tiles, x_bf16, bias, out, m, n, k, splits, per_slice, stream);
  } else {
    LaunchTiles<32>(tiles, x_bf16, bias, out, m, n, k, splits, per_slice, stream);
  }
  if (splits > 1) {
    SumSlices<<<static_cast<unsigned>((m * n + 255) / 256), 256, 0, stream>>>(workspace, bias, y,
                                                                              m, n, splits);
    DF11_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace

int64_t Ew4TcFragmentSteps(int64_t k) {
  return (k + kEw4BlockWeights - 1) / kEw4BlockWeights * kEw4TcStepsPerBlock;
}

void Ew4TcFragmentsCuda(const Ew4View& w, uint16_t* words, cudaStream_t stream) {
  LaunchDump(Ew4Tiles{w}, w.rows, w.cols, words, stream);
}

void Bf16TcFragmentsCuda(const uint16_t* w, int64_t n, int64_t k, uint16_t* words,
                         cudaStream_t stream) {
  LaunchDump(Bf16Tiles{w, n, k}, n, k, words, stream);
}

void Ew4GemmTcCuda(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                   uint16_t* x_bf16, float* workspace, cudaStream_t stream) {
  Launch(Ew4Tiles{w}, x, bias, y, m, w.rows, w.cols, x_bf16, workspace, stream);
}

void Bf16GemmTcCuda(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t m,
                    int64_t n, int64_t k, uint16_t* x_bf16, float* workspace,
                    cudaStream_t stream) {
  Launch(Bf16Tiles{w, n, k}, x, bias, y, m, n, k, x_bf16, workspace, stream);
}

}  // namespace df11
