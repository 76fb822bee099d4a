// SPDX-License-Identifier: Apache-2.0
// The reference gathers the positions some query of the step sees (from the first visible one
// on: with a window, older blocks are not read) into FP32 rows and runs AttentionRef on them, so
// paged and contiguous caches of the same BF16 values give the same bits.
#include "kernels/paged_attention/paged_attention.h"

#include <algorithm>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/common/bf16.h"
#include "kernels/common/check.h"

namespace df11 {

void PagedKvAppendRef(const float* k_new, const float* v_new, int64_t t_new, int64_t row,
                      int64_t past, const int32_t* table, int64_t block_tokens, uint16_t* k_pool,
                      uint16_t* v_pool) {
  DF11_CHECK(t_new >= 0 && row >= 1 && past >= 0 && block_tokens >= 1);
  for (int64_t i = 0; i < t_new; ++i) {
    const int64_t p = past + i;
    DF11_CHECK_MSG(table[p / block_tokens] >= 0, "a released KV block is written");
    const int64_t at = (static_cast<int64_t>(table[p / block_tokens]) * block_tokens +
                        p % block_tokens) * row;
    for (int64_t c = 0; c < row; ++c) {
      k_pool[at + c] = FloatToBf16(k_new[i * row + c]);
      v_pool[at + c] = FloatToBf16(v_new[i * row + c]);
    }
  }
}

int64_t FirstVisiblePosition(int64_t t_total, int64_t t_new, int64_t window) {
  return window > 0 ? std::max<int64_t>(0, t_total - t_new + 1 - window) : 0;
}

void PagedKvGatherRef(const uint16_t* k_pool, const uint16_t* v_pool, const int32_t* table,
                      int64_t block_tokens, int64_t row, int64_t first, int64_t last,
                      float* k_out, float* v_out) {
  DF11_CHECK(block_tokens >= 1 && row >= 1 && 0 <= first && first <= last);
  for (int64_t p = first; p < last; ++p) {
    DF11_CHECK_MSG(table[p / block_tokens] >= 0, "a released KV block is read");
    const int64_t at = (static_cast<int64_t>(table[p / block_tokens]) * block_tokens +
                        p % block_tokens) * row;
    float* k_row = k_out + (p - first) * row;
    float* v_row = v_out + (p - first) * row;
    for (int64_t c = 0; c < row; ++c) {
      k_row[c] = Bf16ToFloat(k_pool[at + c]);
      v_row[c] = Bf16ToFloat(v_pool[at + c]);
    }
  }
}

void PagedAttentionRef(const float* q, const uint16_t* k_pool, const uint16_t* v_pool,
                       const int32_t* table, int64_t block_tokens, int64_t t_new,
                       int64_t t_total, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                       const AttentionParams& params, float* out, int threads) {
  const int64_t window = params.window;
  DF11_CHECK(t_new >= 0 && t_new <= t_total && window >= 0 && block_tokens >= 1);
  DF11_CHECK(n_kv_heads >= 1 && head_dim >= 1);
  if (t_new == 0) return;
  const int64_t first = FirstVisiblePosition(t_total, t_new, window);
  const int64_t row = n_kv_heads * head_dim, n = t_total - first;
  std::vector<float> k(static_cast<size_t>(n * row)), v(static_cast<size_t>(n * row));
  PagedKvGatherRef(k_pool, v_pool, table, block_tokens, row, first, t_total, k.data(), v.data());
  const int64_t past = n - t_new;
  const KvSource kv{k.data(), v.data(), past, k.data() + past * row, v.data() + past * row};
  AttentionRef(q, kv, t_new, n_heads, n_kv_heads, head_dim, params, out, threads);
}

}  // namespace df11
