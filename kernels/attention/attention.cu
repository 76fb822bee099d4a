// SPDX-License-Identifier: Apache-2.0
// AttentionCuda: one block per (query, head), 4 warps. The visible cache is walked in tiles of
// kTile positions: each warp computes scores for a quarter of the tile (lanes split head_dim,
// shuffles sum), warp 0 folds the tile into the running max m and sum l (online softmax:
// p_j = exp(s_j - m_new), l = l * exp(m_old - m_new) + sum p_j), and every thread rescales its
// accumulators and adds p_j * v_j for the head dimensions it owns. out = acc / l at the end.
// The ...PastOnDevice variants read the cache length from device memory, so a CUDA graph that
// captured them stays valid while the cache grows. KvAppendKernel: one thread per float.
#include <algorithm>
#include <cmath>

#include "kernels/attention/attention.h"
#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"

namespace df11 {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 32;  // cache positions per step: one per lane of warp 0
constexpr int kDimsPerThread = static_cast<int>(kAttentionCudaMaxHeadDim) / kThreads;

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int offset = 16; offset > 0; offset /= 2) {
    v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, offset));
  }
  return v;
}

__global__ void __launch_bounds__(kThreads)
    AttentionKernel(const float* __restrict__ q, const float* __restrict__ k_cache,
                    const float* __restrict__ v_cache, int64_t t_new, int64_t t_total_arg,
                    const int32_t* __restrict__ past_length, int64_t n_heads, int64_t group,
                    int64_t head_dim, float scale, float* __restrict__ out) {
  __shared__ float q_shared[kAttentionCudaMaxHeadDim];
  __shared__ float scores[kTile];  // then the tile's probabilities
  __shared__ float correction;     // exp(m_old - m_new) of the current tile
  __shared__ float running_sum;    // l, written by warp 0 only

  const int64_t i = blockIdx.x / n_heads;  // query index in [0, t_new)
  const int64_t h = blockIdx.x % n_heads;
  const int64_t q_stride = n_heads * head_dim;
  const int64_t kv_stride = (n_heads / group) * head_dim;
  const float* qi = q + i * q_stride + h * head_dim;
  const float* k_head = k_cache + (h / group) * head_dim;
  const float* v_head = v_cache + (h / group) * head_dim;
  const int64_t t_total = past_length != nullptr ? *past_length + t_new : t_total_arg;
  const int64_t visible = t_total - t_new + i + 1;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  for (int64_t d = threadIdx.x; d < head_dim; d += kThreads) q_shared[d] = qi[d];
  float acc[kDimsPerThread];  // dims threadIdx.x + r * kThreads (loops unrolled: registers)
#pragma unroll
  for (int r = 0; r < kDimsPerThread; ++r) acc[r] = 0.0f;
  float running_max = -INFINITY;  // meaningful in warp 0
  if (threadIdx.x == 0) running_sum = 0.0f;
  __syncthreads();

  for (int64_t tile = 0; tile < visible; tile += kTile) {
    const int count = visible - tile < kTile ? static_cast<int>(visible - tile) : kTile;
    for (int j = warp; j < count; j += kWarps) {
      const float* kj = k_head + (tile + j) * kv_stride;
      float partial = 0.0f;
      for (int64_t d = lane; d < head_dim; d += 32) partial += q_shared[d] * kj[d];
      partial = WarpSum(partial);
      if (lane == 0) scores[j] = partial * scale;
    }
    __syncthreads();
    if (warp == 0) {
      const float s = lane < count ? scores[lane] : -INFINITY;
      const float new_max = fmaxf(running_max, WarpMax(s));
      const float p = lane < count ? expf(s - new_max) : 0.0f;
      const float tile_sum = WarpSum(p);
      scores[lane] = p;
      if (lane == 0) {
        correction = expf(running_max - new_max);  // 0 on the first tile (running_max = -inf)
        running_sum = running_sum * correction + tile_sum;
      }
      running_max = new_max;
    }
    __syncthreads();
    const float c = correction;
#pragma unroll
    for (int r = 0; r < kDimsPerThread; ++r) {
      const int64_t d = threadIdx.x + r * kThreads;
      if (d < head_dim) {
        float a = acc[r] * c;
        for (int j = 0; j < count; ++j) a += scores[j] * v_head[(tile + j) * kv_stride + d];
        acc[r] = a;
      }
    }
    __syncthreads();  // scores and correction are rewritten by the next tile
  }

  const float inv_sum = 1.0f / running_sum;
  float* oi = out + i * q_stride + h * head_dim;
#pragma unroll
  for (int r = 0; r < kDimsPerThread; ++r) {
    const int64_t d = threadIdx.x + r * kThreads;
    if (d < head_dim) oi[d] = acc[r] * inv_sum;
  }
}

__global__ void KvAppendKernel(const float* __restrict__ k_new, const float* __restrict__ v_new,
                               int64_t count, const int32_t* __restrict__ past_length, int64_t row,
                               float* __restrict__ k_cache, float* __restrict__ v_cache) {
  const int64_t offset = static_cast<int64_t>(*past_length) * row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    k_cache[offset + i] = k_new[i];
    v_cache[offset + i] = v_new[i];
  }
}

}  // namespace

void AttentionCuda(const float* q, const float* k_cache, const float* v_cache, int64_t t_new,
                   int64_t t_total, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                   float* out, cudaStream_t stream) {
  DF11_CHECK(t_new >= 0 && t_new <= t_total);
  DF11_CHECK(n_kv_heads >= 1 && n_heads >= n_kv_heads && n_heads % n_kv_heads == 0);
  DF11_CHECK(head_dim >= 1 && head_dim <= kAttentionCudaMaxHeadDim);
  DF11_CHECK(t_new <= INT32_MAX / n_heads);
  if (t_new == 0) return;
  DF11_CHECK(q != nullptr && k_cache != nullptr && v_cache != nullptr && out != nullptr);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const unsigned blocks = static_cast<unsigned>(t_new * n_heads);
  AttentionKernel<<<blocks, kThreads, 0, stream>>>(q, k_cache, v_cache, t_new, t_total, nullptr,
                                                   n_heads, n_heads / n_kv_heads, head_dim, scale,
                                                   out);
  DF11_CUDA_CHECK_LAUNCH();
}

void AttentionCudaPastOnDevice(const float* q, const float* k_cache, const float* v_cache,
                               int64_t t_new, const int32_t* past_length, int64_t n_heads,
                               int64_t n_kv_heads, int64_t head_dim, float* out,
                               cudaStream_t stream) {
  DF11_CHECK(t_new >= 0);
  DF11_CHECK(n_kv_heads >= 1 && n_heads >= n_kv_heads && n_heads % n_kv_heads == 0);
  DF11_CHECK(head_dim >= 1 && head_dim <= kAttentionCudaMaxHeadDim);
  DF11_CHECK(t_new <= INT32_MAX / n_heads);
  if (t_new == 0) return;
  DF11_CHECK(q != nullptr && k_cache != nullptr && v_cache != nullptr && out != nullptr &&
             past_length != nullptr);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const unsigned blocks = static_cast<unsigned>(t_new * n_heads);
  AttentionKernel<<<blocks, kThreads, 0, stream>>>(q, k_cache, v_cache, t_new, 0, past_length,
                                                   n_heads, n_heads / n_kv_heads, head_dim, scale,
                                                   out);
  DF11_CUDA_CHECK_LAUNCH();
}

void KvAppendCuda(const float* k_new, const float* v_new, int64_t t_new, int64_t row,
                  const int32_t* past_length, float* k_cache, float* v_cache,
                  cudaStream_t stream) {
  DF11_CHECK(t_new >= 0 && row >= 1);
  const int64_t count = t_new * row;
  if (count == 0) return;
  DF11_CHECK(k_new != nullptr && v_new != nullptr && past_length != nullptr &&
             k_cache != nullptr && v_cache != nullptr);
  constexpr int kAppendThreads = 256;
  const int64_t blocks = std::min<int64_t>((count + kAppendThreads - 1) / kAppendThreads, 65535);
  KvAppendKernel<<<static_cast<unsigned>(blocks), kAppendThreads, 0, stream>>>(
      k_new, v_new, count, past_length, row, k_cache, v_cache);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
