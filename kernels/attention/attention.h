// SPDX-License-Identifier: Apache-2.0
// Causal grouped-query attention for one sequence over its KV cache (HF eager attention math):
//   out = softmax(q · kᵀ / sqrt(head_dim), causal) · v, FP32 throughout.
// Query i sits at position p = t_total - t_new + i and sees cache positions 0..p, or with a
// sliding window w > 0 only the last w of them, p - w + 1..p (transformers' sliding-window mask:
// kv > q - w); window 0 means no window. Query head h reads kv head h / (n_heads / n_kv_heads).
// On the CPU each (query, head) row is computed in one fixed order (attention_head.h), so
// AttentionRef and AttentionCpu give the same bits for any `threads`, CPU level and batch.
#pragma once

#include <cstdint>
#include <span>

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

// Requires 0 <= t_new <= t_total, n_kv_heads >= 1, n_heads a multiple of n_kv_heads,
// head_dim >= 1, window >= 0, out not overlapping the inputs. Thread-safe.
void AttentionRef(const float* q,        // (t_new, n_heads, head_dim)
                  const float* k_cache,  // (t_total, n_kv_heads, head_dim)
                  const float* v_cache,  // (t_total, n_kv_heads, head_dim)
                  int64_t t_new, int64_t t_total, int64_t n_heads, int64_t n_kv_heads,
                  int64_t head_dim, int64_t window,
                  float* out,  // (t_new, n_heads, head_dim)
                  int threads);

// One sequence of a step: its new queries over its cache (which already holds their keys).
struct AttentionSequence {
  const float* q;        // (t_new, n_heads, head_dim)
  const float* k_cache;  // (t_total, n_kv_heads, head_dim)
  const float* v_cache;  // (t_total, n_kv_heads, head_dim)
  int64_t t_new, t_total;
  float* out;  // (t_new, n_heads, head_dim)
};

// AttentionRef of every sequence of a step at once, (sequence, head, block of queries) items
// spread over `threads`, with the kernels of ActiveCpuLevel(); bit-identical to AttentionRef
// of each sequence. Same requirements per sequence. Thread-safe.
void AttentionCpu(std::span<const AttentionSequence> sequences, int64_t n_heads,
                  int64_t n_kv_heads, int64_t head_dim, int64_t window, int threads);

#if DF11_WITH_CUDA
// Largest head_dim the CUDA attention supports.
inline constexpr int64_t kAttentionCudaMaxHeadDim = 256;

// A whole step's attention in one launch, whatever sequences it holds: query t belongs to
// sequence seq[t] and sits at position pos[t] of it, so it sees positions 0..pos[t] (the last
// `window` of them when window > 0) of that sequence's cache, k_caches[seq[t]] / v_caches[seq[t]]
// (each (capacity, n_kv_heads, head_dim)), as AttentionRef's query i of one sequence sees
// positions 0..t_total - t_new + i. Everything but q and out's sizes is read on the device, so a
// captured CUDA graph serves any batch of the same token count (caches swapped, lengths grown).
// One block per (query, head) walks the visible cache in tiles with an online softmax (running
// max and sum, rescaled accumulators), so results differ from AttentionRef by rounding only.
// Requires n_kv_heads >= 1, n_heads a multiple of n_kv_heads, 1 <= head_dim <=
// kAttentionCudaMaxHeadDim, window >= 0, tokens * n_heads <= INT32_MAX, out not overlapping
// the inputs.
void AttentionCudaBatched(const float* q,                // (tokens, n_heads, head_dim)
                          const float* const* k_caches,  // (sequences) device pointers
                          const float* const* v_caches,  // (sequences) device pointers
                          const int32_t* seq,            // (tokens) device
                          const int32_t* pos,            // (tokens) device
                          int64_t tokens, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                          int64_t window,
                          float* out,  // (tokens, n_heads, head_dim)
                          cudaStream_t stream);

// Appends a whole step's K and V rows to the caches: row t of k_new / v_new goes to position
// pos[t] of sequence seq[t]'s caches (k_caches[seq[t]], v_caches[seq[t]]: (capacity, row)
// each). Exact; graph-replayable as above.
void KvAppendCudaBatched(const float* k_new,  // (tokens, row)
                         const float* v_new,  // (tokens, row)
                         int64_t tokens, int64_t row,
                         const int32_t* seq,          // (tokens) device
                         const int32_t* pos,          // (tokens) device
                         float* const* k_caches,      // (sequences) device pointers
                         float* const* v_caches,      // (sequences) device pointers
                         cudaStream_t stream);
#endif

}  // namespace df11
