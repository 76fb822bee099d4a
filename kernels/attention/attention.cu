// SPDX-License-Identifier: Apache-2.0
// AttentionCudaBatched: one block per (query, head), 4 warps. The query's sequence, position,
// cache length and cache pointers come from device tables (one launch per step). The visible
// positions (the whole causal prefix, or its last `window` positions: the cache's slots before
// the step, the step's new rows after) are walked in tiles of kTile positions: each warp
// computes scores for a quarter of the tile (lanes split head_dim, shuffles sum), warp 0 folds
// the tile into the running max m and sum l (online softmax: p_j = exp(s_j - m_new),
// l = l * exp(m_old - m_new) + sum p_j), and every thread rescales its accumulators and adds
// p_j * v_j for the head dimensions it owns. out = acc / l at the end. KvAppendBatchedKernel:
// one thread per float.
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

// Where each query's keys and values are: the step's device tables and new rows.
struct CacheTables {
  const int32_t* seq = nullptr;   // per query, its sequence...
  const int32_t* pos = nullptr;   // ...its position there...
  const int32_t* past = nullptr;  // ...and the positions its cache held before the step
  const float* const* k_caches = nullptr;
  const float* const* v_caches = nullptr;
  const float* k_new = nullptr;  // the step's rows
  const float* v_new = nullptr;
  int64_t ring = 0;  // > 0: position j is in slot j % ring
  AttentionParams params;
};

// The row of position j for query i: its cache slot before the step, the step's row after.
__device__ __forceinline__ const float* RowOf(const float* cache, const float* fresh, int64_t j,
                                              int64_t i, int64_t query_pos, int64_t past,
                                              int64_t ring, int64_t stride) {
  if (j >= past) return fresh + (i - (query_pos - j)) * stride;
  return cache + (ring > 0 ? j % ring : j) * stride;
}

__global__ void __launch_bounds__(kThreads)
    AttentionKernel(const float* __restrict__ q, CacheTables src, int64_t n_heads, int64_t group,
                    int64_t head_dim, float* __restrict__ out) {
  __shared__ float q_shared[kAttentionCudaMaxHeadDim];
  __shared__ float scores[kTile];  // then the tile's probabilities
  __shared__ float correction;     // exp(m_old - m_new) of the current tile
  __shared__ float running_sum;    // l, written by warp 0 only

  const int64_t i = blockIdx.x / n_heads;  // query index in [0, tokens)
  const int64_t h = blockIdx.x % n_heads;
  const int64_t q_stride = n_heads * head_dim;
  const int64_t kv_stride = (n_heads / group) * head_dim;
  const float* qi = q + i * q_stride + h * head_dim;
  const int32_t sequence = src.seq[i];
  const int64_t head = (h / group) * head_dim;
  const float* k_cache = src.k_caches[sequence] + head;
  const float* v_cache = src.v_caches[sequence] + head;
  const float* k_fresh = src.k_new + head;
  const float* v_fresh = src.v_new + head;
  const int64_t query_pos = src.pos[i], past = src.past[i], ring = src.ring;
  const int64_t end = query_pos + 1;  // one past the query's position
  const int64_t window = src.params.window;
  const int64_t first = window > 0 && end > window ? end - window : 0;
  const float scale = src.params.scale, cap = src.params.softcap;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  for (int64_t d = threadIdx.x; d < head_dim; d += kThreads) q_shared[d] = qi[d];
  float acc[kDimsPerThread];  // dims threadIdx.x + r * kThreads (loops unrolled: registers)
#pragma unroll
  for (int r = 0; r < kDimsPerThread; ++r) acc[r] = 0.0f;
  float running_max = -INFINITY;  // meaningful in warp 0
  if (threadIdx.x == 0) running_sum = 0.0f;
  __syncthreads();

  for (int64_t tile = first; tile < end; tile += kTile) {
    const int count = end - tile < kTile ? static_cast<int>(end - tile) : kTile;
    for (int j = warp; j < count; j += kWarps) {
      const float* kj = RowOf(k_cache, k_fresh, tile + j, i, query_pos, past, ring, kv_stride);
      float partial = 0.0f;
      for (int64_t d = lane; d < head_dim; d += 32) partial += q_shared[d] * kj[d];
      partial = WarpSum(partial);
      if (lane == 0) {
        float s = partial * scale;
        if (cap > 0) s = tanhf(s / cap) * cap;
        scores[j] = s;
      }
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
        for (int j = 0; j < count; ++j) {
          a += scores[j] * RowOf(v_cache, v_fresh, tile + j, i, query_pos, past, ring, kv_stride)[d];
        }
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

__global__ void KvAppendBatchedKernel(const float* __restrict__ k_new,
                                      const float* __restrict__ v_new, int64_t tokens,
                                      int64_t row, const int32_t* __restrict__ seq,
                                      const int32_t* __restrict__ pos, int64_t ring,
                                      float* const* k_caches, float* const* v_caches) {
  const int64_t count = tokens * row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / row, c = i % row;
    const int32_t s = seq[t];
    // A ring slot goes to the last row of the sequence that maps to it: row t + ring, when it
    // is of the same sequence, is position pos[t] + ring.
    if (ring > 0 && t + ring < tokens && seq[t + ring] == s) continue;
    const int64_t slot = ring > 0 ? pos[t] % ring : pos[t];
    const int64_t at = slot * row + c;
    k_caches[s][at] = k_new[i];
    v_caches[s][at] = v_new[i];
  }
}

void CheckShape(int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                const AttentionParams& params, int64_t ring) {
  DF11_CHECK(n_kv_heads >= 1 && n_heads >= n_kv_heads && n_heads % n_kv_heads == 0);
  DF11_CHECK(head_dim >= 1 && head_dim <= kAttentionCudaMaxHeadDim);
  DF11_CHECK(params.window >= 0);
  DF11_CHECK(ring == 0 || (params.window > 0 && ring >= params.window));
}

}  // namespace

void AttentionCudaBatched(const float* q, const float* k_new, const float* v_new,
                          const float* const* k_caches, const float* const* v_caches,
                          const int32_t* seq, const int32_t* pos, const int32_t* past,
                          int64_t tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                          int64_t ring, const AttentionParams& params, float* out,
                          cudaStream_t stream) {
  DF11_CHECK(tokens >= 0);
  CheckShape(n_heads, n_kv_heads, head_dim, params, ring);
  DF11_CHECK(tokens <= INT32_MAX / n_heads);
  if (tokens == 0) return;
  DF11_CHECK(q != nullptr && k_new != nullptr && v_new != nullptr && k_caches != nullptr &&
             v_caches != nullptr && seq != nullptr && pos != nullptr && past != nullptr &&
             out != nullptr);
  CacheTables src;
  src.seq = seq;
  src.pos = pos;
  src.past = past;
  src.k_caches = k_caches;
  src.v_caches = v_caches;
  src.k_new = k_new;
  src.v_new = v_new;
  src.ring = ring;
  src.params = params;
  const unsigned blocks = static_cast<unsigned>(tokens * n_heads);
  AttentionKernel<<<blocks, kThreads, 0, stream>>>(q, src, n_heads, n_heads / n_kv_heads,
                                                   head_dim, out);
  DF11_CUDA_CHECK_LAUNCH();
}

void KvAppendCudaBatched(const float* k_new, const float* v_new, int64_t tokens, int64_t row,
                         const int32_t* seq, const int32_t* pos, int64_t ring,
                         float* const* k_caches, float* const* v_caches, cudaStream_t stream) {
  DF11_CHECK(tokens >= 0 && row >= 1 && ring >= 0);
  const int64_t count = tokens * row;
  if (count == 0) return;
  DF11_CHECK(k_new != nullptr && v_new != nullptr && seq != nullptr && pos != nullptr &&
             k_caches != nullptr && v_caches != nullptr);
  constexpr int kAppendThreads = 256;
  const int64_t blocks = std::min<int64_t>((count + kAppendThreads - 1) / kAppendThreads, 65535);
  KvAppendBatchedKernel<<<static_cast<unsigned>(blocks), kAppendThreads, 0, stream>>>(
      k_new, v_new, tokens, row, seq, pos, ring, k_caches, v_caches);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
