// SPDX-License-Identifier: Apache-2.0
// One head per ParallelFor chunk, each computed by attention_head.h's AttendHead.
#include <cmath>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/attention/attention_head.h"
#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"

namespace df11 {

float AttentionScale(int64_t head_dim) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

void AttentionRef(const float* q, const KvSource& kv, int64_t t_new, int64_t n_heads,
                  int64_t n_kv_heads, int64_t head_dim, const AttentionParams& params, float* out,
                  int threads) {
  DF11_CHECK(t_new >= 0 && kv.past >= 0);
  DF11_CHECK(params.window >= 0);
  DF11_CHECK(n_kv_heads >= 1 && n_heads >= n_kv_heads && n_heads % n_kv_heads == 0);
  DF11_CHECK(head_dim >= 1);
  if (t_new == 0) return;
  DF11_CHECK(q != nullptr && kv.k_new != nullptr && kv.v_new != nullptr && out != nullptr);
  DF11_CHECK(kv.past == 0 || (kv.k_cache != nullptr && kv.v_cache != nullptr));
  const AttentionSequence s{q, kv, t_new, out};
  const attention_internal::HeadDims d{n_heads, n_kv_heads, head_dim};
  ParallelFor(n_heads, threads, 1, [&](int64_t h_begin, int64_t h_end) {
    std::vector<float> probs(static_cast<size_t>(kv.past + t_new));
    for (int64_t h = h_begin; h < h_end; ++h) {
      attention_internal::AttendHead(s, d, params, h, 0, t_new, probs.data());
    }
  });
}

}  // namespace df11
