// SPDX-License-Identifier: Apache-2.0
// Attention over a paged BF16 KV cache. One layer's pool holds `blocks` blocks of
// (block_tokens, n_kv_heads, head_dim) BF16 for K and as many for V; a sequence's block table
// lists its blocks in position order, so position p is row p % block_tokens of block
// table[p / block_tokens]. New K/V rows are rounded to BF16 (nearest even, as a BF16 model's
// cache in transformers) when appended; attention reads them back exactly (BF16 -> FP32) and
// computes in FP32 as AttentionRef (kernels/attention), whose mask rules it follows: query i of
// a step of t_new tokens sits at position t_total - t_new + i and sees positions up to its own,
// the last params.window only when that is > 0, scores scaled and soft-capped as `params` say.
#pragma once

#include <cstdint>

#include "kernels/attention/attention.h"

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

// Writes k_new / v_new (t_new, row) at positions past..past + t_new - 1 of the sequence whose
// blocks `table` lists (enough of them to hold past + t_new positions). Exact but for the BF16
// rounding.
void PagedKvAppendRef(const float* k_new, const float* v_new,  // (t_new, row)
                      int64_t t_new, int64_t row, int64_t past,
                      const int32_t* table,  // (>= ceil((past + t_new) / block_tokens))
                      int64_t block_tokens,
                      uint16_t* k_pool, uint16_t* v_pool);  // (blocks, block_tokens, row)

// The first position a query of a step of t_new tokens ending at position t_total - 1 sees:
// 0, or with a window the first query's window start.
int64_t FirstVisiblePosition(int64_t t_total, int64_t t_new, int64_t window);

// k_out / v_out (last - first, row) = the rows of positions first..last - 1 of the sequence whose
// blocks `table` lists, as FP32 (exact).
void PagedKvGatherRef(const uint16_t* k_pool, const uint16_t* v_pool,  // (blocks, block_tokens,
                                                                       //  row)
                      const int32_t* table, int64_t block_tokens, int64_t row, int64_t first,
                      int64_t last, float* k_out, float* v_out);

// out = AttentionRef of q over the sequence's positions 0..t_total - 1 read through `table`, bit
// for bit: the visible rows (from FirstVisiblePosition on, the step's own read back as BF16 too)
// are gathered into FP32 and handed to AttentionRef, positions counted from the first of them
// (causality and the window unchanged).
// A batch of sequences does the same with AttentionCpu. Requires what AttentionRef requires.
// Thread-safe.
void PagedAttentionRef(const float* q,  // (t_new, n_heads, head_dim)
                       const uint16_t* k_pool, const uint16_t* v_pool,  // (blocks, block_tokens,
                                                                        //  n_kv_heads, head_dim)
                       const int32_t* table,  // (ceil(t_total / block_tokens))
                       int64_t block_tokens, int64_t t_new, int64_t t_total, int64_t n_heads,
                       int64_t n_kv_heads, int64_t head_dim, const AttentionParams& params,
                       float* out,  // (t_new, n_heads, head_dim)
                       int threads);

#if DF11_WITH_CUDA
// Largest head_dim the CUDA paged attention supports.
inline constexpr int64_t kPagedAttentionCudaMaxHeadDim = 256;

// A whole step's attention in one launch: query t belongs to sequence seq[t] and sits at
// position pos[t] of it; that sequence's block table is row seq[t] of `tables` (sequences,
// table_stride). As PagedAttentionRef's query pos[t] - (t_total - t_new) of that sequence, up
// to rounding (online softmax in tiles). Everything but q and out's
// sizes is read on the device, so a captured CUDA graph replays with new tables and positions.
// Requires n_kv_heads >= 1, n_heads a multiple of n_kv_heads, 1 <= head_dim <=
// kPagedAttentionCudaMaxHeadDim, params.window >= 0, block_tokens >= 1,
// tokens * n_heads <= INT32_MAX.
void PagedAttentionCudaBatched(const float* q,  // (tokens, n_heads, head_dim)
                               const uint16_t* k_pool, const uint16_t* v_pool,  // device
                               const int32_t* tables,  // (sequences, table_stride) device
                               int64_t table_stride, int64_t block_tokens,
                               const int32_t* seq,  // (tokens) device
                               const int32_t* pos,  // (tokens) device
                               int64_t tokens, int64_t n_heads, int64_t n_kv_heads,
                               int64_t head_dim, const AttentionParams& params,
                               float* out,  // (tokens, n_heads, head_dim)
                               cudaStream_t stream);

// Appends a whole step's K and V rows: row t goes to position pos[t] of sequence seq[t]
// (through row seq[t] of `tables`), rounded to BF16 as PagedKvAppendRef. Graph-replayable.
void PagedKvAppendCudaBatched(const float* k_new, const float* v_new,  // (tokens, row)
                              int64_t tokens, int64_t row,
                              const int32_t* tables,  // (sequences, table_stride) device
                              int64_t table_stride, int64_t block_tokens,
                              const int32_t* seq,  // (tokens) device
                              const int32_t* pos,  // (tokens) device
                              uint16_t* k_pool, uint16_t* v_pool, cudaStream_t stream);

// Copies whole blocks within a layer's pools (copy-on-write of shared blocks): block from[i] to
// block to[i], K and V, `block_elems` = block_tokens * row values each. Graph-replayable.
void PagedKvCopyBlocksCuda(const int32_t* from, const int32_t* to,  // (copies) device
                           int64_t copies, int64_t block_elems, uint16_t* k_pool,
                           uint16_t* v_pool, cudaStream_t stream);
#endif

}  // namespace df11
