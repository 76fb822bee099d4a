// SPDX-License-Identifier: Apache-2.0
// EmbeddingGatherCuda: one block per token copies its BF16 table row, times the scale, into an
// FP32 output row (threads stride over hidden, so reads and writes coalesce), or zeros for ids
// outside the shard.
#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/embedding/embedding.h"

namespace df11 {
namespace {

constexpr int kThreads = 256;

__global__ void EmbeddingGatherKernel(const uint16_t* __restrict__ table, int64_t vocab,
                                      int64_t hidden, const int32_t* __restrict__ ids,
                                      int64_t row_begin, float scale, float* __restrict__ out) {
  const int64_t token = blockIdx.x;
  float* dst = out + token * hidden;
  const int64_t row = static_cast<int64_t>(ids[token]) - row_begin;
  if (row < 0 || row >= vocab) {
    for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) dst[j] = 0.0f;
    return;
  }
  const uint16_t* src = table + row * hidden;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) dst[j] = Bf16ToFloat(src[j]) * scale;
}

}  // namespace

void EmbeddingGatherCuda(const uint16_t* table, int64_t vocab, int64_t hidden, const int32_t* ids,
                         int64_t n, int64_t row_begin, float scale, float* out,
                         cudaStream_t stream) {
  DF11_CHECK(vocab >= 1 && hidden >= 1 && n >= 0 && n <= INT32_MAX);
  if (n == 0) return;
  DF11_CHECK(table != nullptr && ids != nullptr && out != nullptr);
  EmbeddingGatherKernel<<<static_cast<unsigned>(n), kThreads, 0, stream>>>(table, vocab, hidden,
                                                                           ids, row_begin, scale, out);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
