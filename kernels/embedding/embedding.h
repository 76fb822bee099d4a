// SPDX-License-Identifier: Apache-2.0
// Token embedding lookup (nn.Embedding) from a BF16 table into FP32 rows, each multiplied by
// `scale` (1, or Gemma's embedding multiplier: Gemma3TextScaledWordEmbedding). For a
// vocab-parallel shard the table holds global rows [row_begin, row_begin + vocab); ids outside
// that range give zero rows, so summing the shards' outputs (all-reduce) yields the full lookup.
#pragma once

#include <cstdint>

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

// out = float(row) * scale, one FP32 multiply (exact for scale 1). Requires vocab, hidden >= 1,
// n >= 0.
void EmbeddingGatherRef(const uint16_t* table,  // (vocab, hidden) BF16
                        int64_t vocab, int64_t hidden,
                        const int32_t* ids,  // (n) global token ids
                        int64_t n, int64_t row_begin, float scale,
                        float* out);  // (n, hidden)

#if DF11_WITH_CUDA
// The same gather on `stream`, bit-identical to EmbeddingGatherRef; all pointers are device
// pointers. Requires n <= INT32_MAX.
void EmbeddingGatherCuda(const uint16_t* table,  // (vocab, hidden) BF16
                         int64_t vocab, int64_t hidden,
                         const int32_t* ids,  // (n) global token ids
                         int64_t n, int64_t row_begin, float scale,
                         float* out,  // (n, hidden)
                         cudaStream_t stream);
#endif

}  // namespace df11
