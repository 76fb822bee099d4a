// SPDX-License-Identifier: Apache-2.0
// RMSNorm as Hugging Face LlamaRMSNorm (also Qwen2/Qwen3/Mistral, and Qwen3's per-head q/k norm
// with rows = tokens * heads, dim = head_dim) and Gemma3RMSNorm (weight_offset 1):
//   y = (weight_offset + w) * (x * rsqrt(mean(x²) + eps))
// HF casts the normalized value back to the input dtype before multiplying by the weight; with
// FP32 activations that cast is a no-op, so here everything after the BF16 weight is FP32
// (Gemma's 1 + w is formed in FP32, as transformers does).
#pragma once

#include <cstdint>

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

// Requires rows >= 0, dim >= 1. y may equal x (in place); otherwise they must not overlap.
void RmsNormRef(const float* x,         // (rows, dim)
                const uint16_t* weight,  // (dim) BF16
                float weight_offset,     // 0, or Gemma's 1
                float eps, int64_t rows, int64_t dim,
                float* y);  // (rows, dim)

#if DF11_WITH_CUDA
// The same on `stream`, device pointers, one block per row. The mean of squares is summed in
// FP32 (a per-thread sum, then warp shuffles), so results differ from RmsNormRef by a few ulps.
// Requires rows <= INT32_MAX; y may equal x.
void RmsNormCuda(const float* x,          // (rows, dim)
                 const uint16_t* weight,  // (dim) BF16
                 float weight_offset,     // 0, or Gemma's 1
                 float eps, int64_t rows, int64_t dim,
                 float* y,  // (rows, dim)
                 cudaStream_t stream);
#endif

}  // namespace df11
