// SPDX-License-Identifier: Apache-2.0
// One head per ParallelFor item; each (head, query) row is computed the same way whatever the
// thread count: scores, max-subtracted exponentials, probabilities normalised first (as HF's
// softmax), then the probability-weighted sum of v rows.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"

namespace df11 {
namespace {

float Dot(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

void AttentionRef(const float* q, const float* k_cache, const float* v_cache, int64_t t_new,
                  int64_t t_total, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                  int64_t window, float* out, int threads) {
  DF11_CHECK(t_new >= 0 && t_new <= t_total);
  DF11_CHECK(window >= 0);
  DF11_CHECK(n_kv_heads >= 1 && n_heads >= n_kv_heads && n_heads % n_kv_heads == 0);
  DF11_CHECK(head_dim >= 1);
  if (t_new == 0) return;
  DF11_CHECK(q != nullptr && k_cache != nullptr && v_cache != nullptr && out != nullptr);
  const int64_t group = n_heads / n_kv_heads;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  const int64_t q_stride = n_heads * head_dim;      // between tokens of q and out
  const int64_t kv_stride = n_kv_heads * head_dim;  // between positions of the cache
  ParallelFor(n_heads, threads, 1, [&](int64_t h_begin, int64_t h_end) {
    std::vector<float> probs(static_cast<size_t>(t_total));
    for (int64_t h = h_begin; h < h_end; ++h) {
      const float* k_head = k_cache + (h / group) * head_dim;
      const float* v_head = v_cache + (h / group) * head_dim;
      for (int64_t i = 0; i < t_new; ++i) {
        const float* qi = q + i * q_stride + h * head_dim;
        float* oi = out + i * q_stride + h * head_dim;
        const int64_t end = t_total - t_new + i + 1;  // positions first .. own position
        const int64_t first = window > 0 ? std::max<int64_t>(0, end - window) : 0;
        float max_score = -INFINITY;
        for (int64_t j = first; j < end; ++j) {
          probs[j] = Dot(qi, k_head + j * kv_stride, head_dim) * scale;
          max_score = std::max(max_score, probs[j]);
        }
        float sum = 0.0f;
        for (int64_t j = first; j < end; ++j) {
          probs[j] = std::exp(probs[j] - max_score);
          sum += probs[j];
        }
        const float inv_sum = 1.0f / sum;
        std::fill(oi, oi + head_dim, 0.0f);
        for (int64_t j = first; j < end; ++j) {
          const float p = probs[j] * inv_sum;
          const float* vj = v_head + j * kv_stride;
          for (int64_t d = 0; d < head_dim; ++d) oi[d] += p * vj[d];
        }
      }
    }
  });
}

}  // namespace df11
