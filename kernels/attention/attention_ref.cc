// SPDX-License-Identifier: Apache-2.0
// One head per ParallelFor chunk, each computed by attention_head.h's AttendHead.
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/attention/attention_head.h"
#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"

namespace df11 {

void AttentionRef(const float* q, const float* k_cache, const float* v_cache, int64_t t_new,
                  int64_t t_total, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                  int64_t window, float* out, int threads) {
  DF11_CHECK(t_new >= 0 && t_new <= t_total);
  DF11_CHECK(window >= 0);
  DF11_CHECK(n_kv_heads >= 1 && n_heads >= n_kv_heads && n_heads % n_kv_heads == 0);
  DF11_CHECK(head_dim >= 1);
  if (t_new == 0) return;
  DF11_CHECK(q != nullptr && k_cache != nullptr && v_cache != nullptr && out != nullptr);
  const AttentionSequence s{q, k_cache, v_cache, t_new, t_total, out};
  const attention_internal::HeadDims d{n_heads, n_kv_heads, head_dim, window};
  ParallelFor(n_heads, threads, 1, [&](int64_t h_begin, int64_t h_end) {
    std::vector<float> probs(static_cast<size_t>(t_total));
    for (int64_t h = h_begin; h < h_end; ++h) {
      attention_internal::AttendHead(s, d, h, 0, t_new, probs.data());
    }
  });
}

}  // namespace df11
