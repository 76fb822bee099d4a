// SPDX-License-Identifier: Apache-2.0
// RopeCuda: one block per token, threads over its (head, pair) items. The angle is the same FP32
// product as RopeRef; the rotation uses __fmul_rn/__fadd_rn/__fsub_rn so nvcc cannot fuse it into
// multiply-adds, keeping HF's rounding: cos and sin times the attention scaling, then
// (x1 * cos - x2 * sin, x2 * cos + x1 * sin).
#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/rope/rope.h"

namespace df11 {
namespace {

constexpr int kThreads = 128;

__global__ void RopeKernel(float* x, int64_t heads, int64_t head_dim,
                           const int32_t* __restrict__ positions,
                           const float* __restrict__ inv_freq, float attention_scaling) {
  const int64_t t = blockIdx.x;
  const int64_t half = head_dim / 2;
  const float pos = static_cast<float>(positions[t]);
  float* xt = x + t * heads * head_dim;
  for (int64_t item = threadIdx.x; item < heads * half; item += blockDim.x) {
    const int64_t h = item / half, i = item % half;
    float s, c;
    sincosf(__fmul_rn(pos, inv_freq[i]), &s, &c);
    c = __fmul_rn(c, attention_scaling);
    s = __fmul_rn(s, attention_scaling);
    float* xh = xt + h * head_dim;
    const float x1 = xh[i];
    const float x2 = xh[i + half];
    xh[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
    xh[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s));
  }
}

}  // namespace

void RopeCuda(float* x, int64_t tokens, int64_t heads, int64_t head_dim, const int32_t* positions,
              const float* inv_freq, float attention_scaling, cudaStream_t stream) {
  DF11_CHECK(tokens >= 0 && heads >= 1 && head_dim >= 2 && head_dim % 2 == 0);
  DF11_CHECK(tokens <= INT32_MAX);
  if (tokens == 0) return;
  DF11_CHECK(x != nullptr && positions != nullptr && inv_freq != nullptr);
  RopeKernel<<<static_cast<unsigned>(tokens), kThreads, 0, stream>>>(x, heads, head_dim, positions,
                                                                     inv_freq, attention_scaling);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
