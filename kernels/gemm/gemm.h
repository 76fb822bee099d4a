// SPDX-License-Identifier: Apache-2.0
// Linear layer on BF16 weights: y = x · wᵀ (+ bias), as torch.nn.Linear with the weight stored
// (out_features, in_features) row-major. FP32 activations, FP32 accumulation. Results are
// bit-identical for any `threads`; the m == 1 path (GEMV) rounds differently from m > 1, so a
// row's result may depend on the batch size (allowed: see DESIGN "Lossless means").
#pragma once

#include <cstdint>

#if DF11_WITH_CUDA
#include <cublas_api.h>
#include <cuda_runtime_api.h>
#endif

namespace df11 {

// Requires m, n, k >= 1, x, w, y non-null, y not overlapping x or w. Thread-safe.
void GemmBf16Ref(const float* x,        // (m, k)
                 const uint16_t* w,     // (n, k) BF16
                 const uint16_t* bias,  // (n) BF16, or nullptr
                 float* y,              // (m, n)
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
