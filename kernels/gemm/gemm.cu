// SPDX-License-Identifier: Apache-2.0
// GemmBf16Cuda: x (FP32) is rounded to BF16 by a small kernel (the shared FloatToBf16, so the CPU
// tests round identically), cublasGemmEx computes y = x · wᵀ with BF16 inputs, FP32 accumulation
// and FP32 output, and a second kernel adds the BF16 bias. cuBLAS is column-major: row-major
// y (m, n) is its (n, m) matrix yᵀ = w · xᵀ, where w (n, k) row-major is the transpose of its
// column-major (k, n) view.
#include <cublas_v2.h>

#include <algorithm>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/cublas_check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/gemm/gemm.h"

namespace df11 {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

unsigned GridFor(int64_t n) {
  return static_cast<unsigned>(std::min(kMaxBlocks, (n + kThreads - 1) / kThreads));
}

__global__ void RoundToBf16Kernel(const float* __restrict__ x, uint16_t* __restrict__ x_bf16,
                                  int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    x_bf16[i] = FloatToBf16(x[i]);
  }
}

__global__ void AddBiasKernel(float* __restrict__ y, const uint16_t* __restrict__ bias, int64_t m,
                              int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < m * n;
       i += stride) {
    y[i] += Bf16ToFloat(bias[i % n]);
  }
}

}  // namespace

void GemmBf16Cuda(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t m,
                  int64_t n, int64_t k, uint16_t* x_bf16, cublasHandle_t handle,
                  cudaStream_t stream) {
  DF11_CHECK(m >= 1 && n >= 1 && k >= 1);
  DF11_CHECK(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX);
  DF11_CHECK(x != nullptr && w != nullptr && y != nullptr && x_bf16 != nullptr);
  DF11_CHECK(handle != nullptr);
  cudaStream_t bound = nullptr;
  DF11_CUBLAS_CHECK(cublasGetStream(handle, &bound));
  // Rebinding resets the handle's workspace to cuBLAS's default pool; skip it when not needed.
  if (bound != stream) DF11_CUBLAS_CHECK(cublasSetStream(handle, stream));

  RoundToBf16Kernel<<<GridFor(m * k), kThreads, 0, stream>>>(x, x_bf16, m * k);
  DF11_CUDA_CHECK_LAUNCH();
  const float alpha = 1.0f, beta = 0.0f;
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  DF11_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, ni, mi, ki, &alpha, w,
                                 CUDA_R_16BF, ki, x_bf16, CUDA_R_16BF, ki, &beta, y, CUDA_R_32F, ni,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (bias != nullptr) {
    AddBiasKernel<<<GridFor(m * n), kThreads, 0, stream>>>(y, bias, m, n);
    DF11_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace df11
