// SPDX-License-Identifier: Apache-2.0
// PagedAttentionCudaBatched: one block per (query, head), 4 warps; each cache position is found
// through the sequence's block table and read as BF16. The visible positions are walked in tiles
// of kTile: each warp scores a quarter of the tile (lanes split head_dim, shuffles sum), warp 0
// folds the tile into the running max m and sum l (online softmax), and every thread rescales
// its accumulators and adds p_j * v_j for the head dimensions it owns; out = acc / l. The append and block-copy
// kernels: one thread per value.
#include <algorithm>
#include <cmath>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/paged_attention/paged_attention.h"

namespace df11 {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 32;  // positions per tile: one per lane of warp 0
constexpr int kDimsPerThread = static_cast<int>(kPagedAttentionCudaMaxHeadDim) / kThreads;

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

// Where each query's K/V rows are: the step's device tables.
struct PagedTables {
  const int32_t* seq = nullptr;     // per query, its sequence...
  const int32_t* pos = nullptr;     // ...and its position there
  const int32_t* tables = nullptr;  // (sequences, table_stride) block ids
  int64_t table_stride = 0;
  int64_t block_tokens = 0;
  AttentionParams params;
};

// Offset of position p's row in a layer's pool, for the sequence whose table is `table`.
__device__ __forceinline__ int64_t RowOffset(const int32_t* table, int64_t block_tokens,
                                             int64_t row, int64_t p) {
  return (static_cast<int64_t>(table[p / block_tokens]) * block_tokens + p % block_tokens) * row;
}

__global__ void __launch_bounds__(kThreads)
    PagedAttentionKernel(const float* __restrict__ q, const uint16_t* __restrict__ k_pool,
                         const uint16_t* __restrict__ v_pool, PagedTables src, int64_t n_heads,
                         int64_t group, int64_t head_dim, float* __restrict__ out) {
  __shared__ float q_shared[kPagedAttentionCudaMaxHeadDim];
  __shared__ float scores[kTile];  // then the tile's probabilities
  __shared__ int64_t rows[kTile];  // the tile's row offsets in the pools
  __shared__ float correction;     // exp(m_old - m_new) of the current tile
  __shared__ float running_sum;    // l, written by warp 0 only

  const int64_t i = blockIdx.x / n_heads;  // query index in [0, tokens)
  const int64_t h = blockIdx.x % n_heads;
  const int64_t q_stride = n_heads * head_dim;
  const int64_t kv_stride = (n_heads / group) * head_dim;
  const float* qi = q + i * q_stride + h * head_dim;
  const int32_t* table = src.tables + static_cast<int64_t>(src.seq[i]) * src.table_stride;
  const int64_t end = static_cast<int64_t>(src.pos[i]) + 1;  // one past the query's position
  const int64_t window = src.params.window;
  const int64_t first = window > 0 && end > window ? end - window : 0;
  const float scale = src.params.scale, cap = src.params.softcap;
  const int64_t head_offset = (h / group) * head_dim;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  for (int64_t d = threadIdx.x; d < head_dim; d += kThreads) q_shared[d] = qi[d];
  float acc[kDimsPerThread];  // dims threadIdx.x + r * kThreads (loops unrolled: registers)
#pragma unroll
  for (int r = 0; r < kDimsPerThread; ++r) acc[r] = 0.0f;
  float running_max = -INFINITY;  // meaningful in warp 0
  if (threadIdx.x == 0) running_sum = 0.0f;

  for (int64_t tile = first; tile < end; tile += kTile) {
    const int count = end - tile < kTile ? static_cast<int>(end - tile) : kTile;
    if (threadIdx.x < count) {
      rows[threadIdx.x] =
          RowOffset(table, src.block_tokens, kv_stride, tile + threadIdx.x) + head_offset;
    }
    __syncthreads();
    for (int j = warp; j < count; j += kWarps) {
      const uint16_t* kj = k_pool + rows[j];
      float partial = 0.0f;
      for (int64_t d = lane; d < head_dim; d += 32) partial += q_shared[d] * Bf16ToFloat(kj[d]);
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
        for (int j = 0; j < count; ++j) a += scores[j] * Bf16ToFloat(v_pool[rows[j] + d]);
        acc[r] = a;
      }
    }
    __syncthreads();  // scores, rows and correction are rewritten by the next tile
  }

  const float inv_sum = 1.0f / running_sum;
  float* oi = out + i * q_stride + h * head_dim;
#pragma unroll
  for (int r = 0; r < kDimsPerThread; ++r) {
    const int64_t d = threadIdx.x + r * kThreads;
    if (d < head_dim) oi[d] = acc[r] * inv_sum;
  }
}

__global__ void PagedKvAppendKernel(const float* __restrict__ k_new,
                                    const float* __restrict__ v_new, int64_t count, int64_t row,
                                    const int32_t* __restrict__ tables, int64_t table_stride,
                                    int64_t block_tokens, const int32_t* __restrict__ seq,
                                    const int32_t* __restrict__ pos, uint16_t* k_pool,
                                    uint16_t* v_pool) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / row, c = i % row;
    const int32_t* table = tables + static_cast<int64_t>(seq[t]) * table_stride;
    const int64_t at = RowOffset(table, block_tokens, row, pos[t]) + c;
    k_pool[at] = FloatToBf16(k_new[i]);
    v_pool[at] = FloatToBf16(v_new[i]);
  }
}

__global__ void PagedKvCopyBlocksKernel(const int32_t* __restrict__ from,
                                        const int32_t* __restrict__ to, int64_t count,
                                        int64_t block_elems, uint16_t* k_pool, uint16_t* v_pool) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = i / block_elems, e = i % block_elems;
    const int64_t src = static_cast<int64_t>(from[b]) * block_elems + e;
    const int64_t dst = static_cast<int64_t>(to[b]) * block_elems + e;
    k_pool[dst] = k_pool[src];
    v_pool[dst] = v_pool[src];
  }
}

unsigned GridFor(int64_t count, int threads) {
  return static_cast<unsigned>(std::min<int64_t>((count + threads - 1) / threads, 65535));
}

}  // namespace

void PagedAttentionCudaBatched(const float* q, const uint16_t* k_pool, const uint16_t* v_pool,
                               const int32_t* tables, int64_t table_stride,
                               int64_t block_tokens, const int32_t* seq, const int32_t* pos,
                               int64_t tokens, int64_t n_heads, int64_t n_kv_heads,
                               int64_t head_dim, const AttentionParams& params, float* out,
                               cudaStream_t stream) {
  DF11_CHECK(tokens >= 0 && block_tokens >= 1 && table_stride >= 1 && params.window >= 0);
  DF11_CHECK(n_kv_heads >= 1 && n_heads >= n_kv_heads && n_heads % n_kv_heads == 0);
  DF11_CHECK(head_dim >= 1 && head_dim <= kPagedAttentionCudaMaxHeadDim);
  DF11_CHECK(tokens <= INT32_MAX / n_heads);
  if (tokens == 0) return;
  DF11_CHECK(q != nullptr && k_pool != nullptr && v_pool != nullptr && tables != nullptr &&
             seq != nullptr && pos != nullptr && out != nullptr);
  PagedTables src;
  src.seq = seq;
  src.pos = pos;
  src.tables = tables;
  src.table_stride = table_stride;
  src.block_tokens = block_tokens;
  src.params = params;
  const unsigned blocks = static_cast<unsigned>(tokens * n_heads);
  PagedAttentionKernel<<<blocks, kThreads, 0, stream>>>(q, k_pool, v_pool, src, n_heads,
                                                        n_heads / n_kv_heads, head_dim, out);
  DF11_CUDA_CHECK_LAUNCH();
}

void PagedKvAppendCudaBatched(const float* k_new, const float* v_new, int64_t tokens,
                              int64_t row, const int32_t* tables, int64_t table_stride,
                              int64_t block_tokens, const int32_t* seq, const int32_t* pos,
                              uint16_t* k_pool, uint16_t* v_pool, cudaStream_t stream) {
  DF11_CHECK(tokens >= 0 && row >= 1 && block_tokens >= 1 && table_stride >= 1);
  const int64_t count = tokens * row;
  if (count == 0) return;
  DF11_CHECK(k_new != nullptr && v_new != nullptr && tables != nullptr && seq != nullptr &&
             pos != nullptr && k_pool != nullptr && v_pool != nullptr);
  constexpr int kAppendThreads = 256;
  PagedKvAppendKernel<<<GridFor(count, kAppendThreads), kAppendThreads, 0, stream>>>(
      k_new, v_new, count, row, tables, table_stride, block_tokens, seq, pos, k_pool, v_pool);
  DF11_CUDA_CHECK_LAUNCH();
}

void PagedKvCopyBlocksCuda(const int32_t* from, const int32_t* to, int64_t copies,
                           int64_t block_elems, uint16_t* k_pool, uint16_t* v_pool,
                           cudaStream_t stream) {
  DF11_CHECK(copies >= 0 && block_elems >= 1);
  const int64_t count = copies * block_elems;
  if (count == 0) return;
  DF11_CHECK(from != nullptr && to != nullptr && k_pool != nullptr && v_pool != nullptr);
  constexpr int kCopyThreads = 256;
  PagedKvCopyBlocksKernel<<<GridFor(count, kCopyThreads), kCopyThreads, 0, stream>>>(
      from, to, count, block_elems, k_pool, v_pool);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
