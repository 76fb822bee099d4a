// SPDX-License-Identifier: Apache-2.0
// Fused decode-GEMV for ew4 weights, batch 1 to kEw4GemvMaxBatch: y = x · wᵀ (+ bias) with the
// weights decoded in registers (CPU: AVX-512 or AVX2 chosen at run time, scalar otherwise; CUDA:
// in each lane's registers), never written to memory. FP32 activations, FP32 accumulation.
//
// CPU summation order (every CPU path, scalar or vector, ew4 or raw BF16, gives the same bits):
// output (b, j) keeps 16 FP32 partial sums; weight p of row j goes to partial Ew4GemvLane(p),
// added with a fused multiply-add in increasing p; the partials are then summed pairwise
// (p[l] += p[l + 8], then + 4, + 2, + 1) and the bias (BF16) added last. A row is computed by
// one thread, so results do not depend on `threads`; they do not depend on the batch either.
// Bf16GemvOrderedRef is that computation on raw BF16 weights: ew4 weights give bit-identical
// outputs to their decoded BF16 (tests/kernels/ew4/). It rounds differently from GemmBf16Ref.
//
// The CUDA kernels (Ew4GemvCuda, Bf16GemvOrderedCuda: one template, two weight sources) give
// bit-identical outputs to each other and agree with the CPU within FP32 rounding; see there.
#pragma once

#include <cstdint>

#include "kernels/common/cpu_features.h"
#include "kernels/common/host_device.h"
#include "kernels/ew4/ew4_format.h"

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

inline constexpr int64_t kEw4GemvMaxBatch = 8;
inline constexpr int kEw4GemvLanes = 16;

// The partial sum that weight p of a row accumulates into: the lane a 16-float vector of the
// AVX-512 decode holds it in (4 per 128-bit lane of 16 weights, one per pair of BF16 words the
// decode widens with a shift or a mask: ew4_gemv_cpu.cc).
DF11_HD int Ew4GemvLane(int64_t p) {
  return static_cast<int>(((p & 63) >> 4) * 4 + ((p >> 1) & 3));
}

// x (m, k) FP32, w (n, k) ew4 (host, validated), bias (n) BF16 or null, y (m, n).
// Requires 1 <= m <= kEw4GemvMaxBatch, y not overlapping x. Thread-safe.
// Ew4GemvRef: the plain C++ oracle. Ew4GemvCpu: the fastest path `level` allows (default: the
// run-time dispatch's ActiveCpuLevel(); a level above this CPU's is lowered to it). AVX-512 and
// AVX512-BF16 run the AVX-512 path, AVX2 the AVX2 path, scalar the oracle.
void Ew4GemvRef(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                int threads);
void Ew4GemvCpu(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                int threads, CpuLevel level = ActiveCpuLevel());
// Steps of more rows of x (any m >= 1; the fused GEMV is faster up to kEw4GemvMaxBatch):
// GemmBf16RowsCpu (kernels/gemm/gemm.h) on tiles of rows decoded as they are multiplied, so
// GemmBf16Cpu's bits on the decoded weights without ever decoding the whole matrix.
void Ew4GemmCpu(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                int threads);
// The same order on raw BF16 weights w (n, k).
void Bf16GemvOrderedRef(const float* x, const uint16_t* w, const uint16_t* bias, float* y,
                        int64_t m, int64_t n, int64_t k, int threads);
void Bf16GemvOrderedCpu(const float* x, const uint16_t* w, const uint16_t* bias, float* y,
                        int64_t m, int64_t n, int64_t k, int threads,
                        CpuLevel level = ActiveCpuLevel());

#if DF11_WITH_CUDA
// Device pointers; w a device view (Ew4DeviceBuffer). Each row's k range is cut into `splits`
// slices (Ew4GemvSplits); a slice's partial sums go to `workspace` (splits * m * n floats) and a
// second kernel adds them in slice order, so results are deterministic and do not depend on the
// launch. Within a slice, each warp lane accumulates its weights in a fixed order and the warp
// sums its lanes with a fixed butterfly. No allocation: capturable in a CUDA graph.
// Requires 1 <= m <= kEw4GemvMaxBatch, workspace of Ew4GemvWorkspaceFloats(m, n, k) floats.
int Ew4GemvSplits(int64_t n, int64_t k);
int64_t Ew4GemvWorkspaceFloats(int64_t m, int64_t n, int64_t k);
void Ew4GemvCuda(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                 float* workspace, cudaStream_t stream);
void Bf16GemvOrderedCuda(const float* x, const uint16_t* w, const uint16_t* bias, float* y,
                         int64_t m, int64_t n, int64_t k, float* workspace, cudaStream_t stream);
#endif

}  // namespace df11
