// SPDX-License-Identifier: Apache-2.0
// Linear layer on BF16 weights: y = x · wᵀ (+ bias), as torch.nn.Linear with the weight stored
// (out_features, in_features) row-major. FP32 activations, FP32 accumulation.
//
// On the CPU every element is the same function of its x row and w row, computed in one fixed
// order (the "16-lane order"): 16 partial sums s_l = fma(x[16q + l], w[16q + l], s_l) over
// q = 0, 1, ... while 16q + 16 <= k; then s_l += s_{l+8}, s_l += s_{l+4}, s_l += s_{l+2},
// s_0 += s_1 (each for l below the step); then s = fma(x[t], w[t], s_0) over the last k % 16
// elements in order; finally y = s + bias (one FP32 add). So GemmBf16Ref and GemmBf16Cpu give
// bit-identical results for any `threads`, any batch composition (a row's y depends only on its x
// row, not on m or the other rows) and any CPU level; they differ from a plain sequential sum by
// rounding only.
#pragma once

#include <cstdint>
#include <functional>

#if DF11_WITH_CUDA
#include <cublas_api.h>
#include <cuda_runtime_api.h>
#endif

namespace df11 {

// The oracle: plain C++ (std::fma) in the 16-lane order, rows of w spread over `threads`.
// Requires m, n, k >= 1, x, w, y non-null, y not overlapping x or w. Thread-safe.
void GemmBf16Ref(const float* x,        // (m, k)
                 const uint16_t* w,     // (n, k) BF16
                 const uint16_t* bias,  // (n) BF16, or nullptr
                 float* y,              // (m, n)
                 int64_t m, int64_t n, int64_t k, int threads);

// The CPU backend's GEMV (m <= 8, decode) and GEMM (prefill): GemmBf16Ref's results, computed by
// the kernels of ActiveCpuLevel() (kernels/common/cpu_features.h). AVX-512 and AVX2 read BF16
// weights straight from w, widen them in registers (never a tile in memory) and multiply blocks
// of up to 7 rows of x by 1-8 rows of w with one FMA accumulator per pair; the AVX512-BF16 level
// runs the AVX-512 kernels (its dot instruction takes BF16 activations, which this FP32 path
// does not round to). The threads get tiles of y (x rows by w rows) fixed by m, n, k and
// `threads`, never by timing (an element's value depends on neither). Same contract as GemmBf16Ref.
void GemmBf16Cpu(const float* x,        // (m, k)
                 const uint16_t* w,     // (n, k) BF16
                 const uint16_t* bias,  // (n) BF16, or nullptr
                 float* y,              // (m, n)
                 int64_t m, int64_t n, int64_t k, int threads);

// Writes rows [j0, j1) of w, (j1 - j0, k) BF16, to `out`; called from several threads at once.
using GemmWeightRows = std::function<void(int64_t j0, int64_t j1, uint16_t* out)>;

// GemmBf16Cpu's results, bit for bit, for weights held in another form (a lossless codec):
// each thread writes one tile of w rows at a time into a buffer of its own (with `rows`) and
// multiplies every row of x by it while it stays in the core's L2, so at most one tile per
// thread exists decoded, never the matrix. For steps of many tokens (prefill), where each
// decoded weight serves every row of x.
void GemmBf16RowsCpu(const float* x,               // (m, k)
                     const GemmWeightRows& rows,   // w (n, k)
                     const uint16_t* bias,         // (n) BF16, or nullptr
                     float* y,                     // (m, n)
                     int64_t m, int64_t n, int64_t k, int threads);

#if DF11_WITH_CUDA
// The same layer on `stream` (device pointers) with cuBLAS: x is first rounded to BF16 (nearest
// even) into `x_bf16`, then cublasGemmEx multiplies BF16 x BF16 with FP32 accumulation into FP32
// y, and the bias is added in FP32. So the GPU path rounds activations to BF16, which GemmBf16Ref
// does not: per element |y - ref| <= 2^-9 * sum_i |x_i w_i| plus accumulation rounding. With x
// already BF16-representable only the summation order differs. `x_bf16` is a caller-owned
// workspace of m * k elements (2 * m * k bytes). Binds `handle` to `stream` when it is bound to
// another stream (cublasSetStream), so a handle must not be shared across threads. No allocation
// by this code. Requires m, n, k <= INT32_MAX (cuBLAS dimensions).
void GemmBf16Cuda(const float* x,        // (m, k)
                  const uint16_t* w,     // (n, k) BF16
                  const uint16_t* bias,  // (n) BF16, or nullptr
                  float* y,              // (m, n)
                  int64_t m, int64_t n, int64_t k,
                  uint16_t* x_bf16,  // (m, k) workspace
                  cublasHandle_t handle, cudaStream_t stream);
#endif

}  // namespace df11
