// SPDX-License-Identifier: Apache-2.0
// SwiGluCuda and AddCuda: grid-stride elementwise loops (the grid is capped; each thread walks
// several elements). silu keeps SwiGluRef's form g / (1 + exp(-g)), so large negative g gives a
// signed zero, never NaN.
#include <algorithm>

#include "kernels/activation/activation.h"
#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"

namespace df11 {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

unsigned GridFor(int64_t n) {
  return static_cast<unsigned>(std::min(kMaxBlocks, (n + kThreads - 1) / kThreads));
}

__global__ void SwiGluKernel(const float* gate, const float* up, float* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void AddKernel(float* x, const float* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    x[i] += y[i];
  }
}

}  // namespace

void SwiGluCuda(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream) {
  DF11_CHECK(n >= 0);
  if (n == 0) return;
  DF11_CHECK(gate != nullptr && up != nullptr && out != nullptr);
  SwiGluKernel<<<GridFor(n), kThreads, 0, stream>>>(gate, up, out, n);
  DF11_CUDA_CHECK_LAUNCH();
}

void AddCuda(float* x, const float* y, int64_t n, cudaStream_t stream) {
  DF11_CHECK(n >= 0);
  if (n == 0) return;
  DF11_CHECK(x != nullptr && y != nullptr);
  AddKernel<<<GridFor(n), kThreads, 0, stream>>>(x, y, n);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
