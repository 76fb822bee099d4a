// SPDX-License-Identifier: Apache-2.0
// RmsNormCuda: one block per row. Each thread sums the squares of its strided elements in FP32,
// warp shuffles and one shared-memory pass give the row's sum, then each thread scales the same
// elements it read (which is what makes y == x safe). HF's order: (x * inv_rms) then
// * (offset + w).
#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/rmsnorm/rmsnorm.h"

namespace df11 {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

__global__ void __launch_bounds__(kThreads)
    RmsNormKernel(const float* x, const uint16_t* __restrict__ weight, float weight_offset,
                  float eps, int64_t dim, float* y) {
  __shared__ float warp_sums[kWarps];
  __shared__ float inv_rms_shared;
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * dim;
  float* yr = y + static_cast<int64_t>(blockIdx.x) * dim;
  float sum_sq = 0.0f;
  for (int64_t j = threadIdx.x; j < dim; j += kThreads) sum_sq += xr[j] * xr[j];
  sum_sq = WarpSum(sum_sq);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_sums[warp] = sum_sq;
  __syncthreads();
  if (warp == 0) {
    float total = WarpSum(lane < kWarps ? warp_sums[lane] : 0.0f);
    if (lane == 0) {
      const float variance = total / static_cast<float>(dim);
      inv_rms_shared = 1.0f / sqrtf(variance + eps);
    }
  }
  __syncthreads();
  const float inv_rms = inv_rms_shared;
  for (int64_t j = threadIdx.x; j < dim; j += kThreads) {
    yr[j] = (weight_offset + Bf16ToFloat(weight[j])) * (xr[j] * inv_rms);
  }
}

}  // namespace

void RmsNormCuda(const float* x, const uint16_t* weight, float weight_offset, float eps,
                 int64_t rows, int64_t dim, float* y, cudaStream_t stream) {
  DF11_CHECK(rows >= 0 && dim >= 1 && rows <= INT32_MAX);
  if (rows == 0) return;
  DF11_CHECK(x != nullptr && weight != nullptr && y != nullptr);
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(x, weight, weight_offset,
                                                                      eps, dim, y);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
