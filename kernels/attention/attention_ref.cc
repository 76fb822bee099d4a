// SPDX-License-Identifier: Apache-2.0
// One head per ParallelFor item; each (head, query) row is computed the same way whatever the
// thread count: scores (scaled, then soft-capped as transformers does: / cap, tanh, * cap),
// max-subtracted exponentials, probabilities normalised first (as HF's softmax), then the
// probability-weighted sum of v rows.
#include <algorithm>
#include <cmath>
#include <cstring>
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

// Where position j's row is: the cache (slot j, or j % ring) before the step, the new rows after.
const float* RowOf(const float* cache, const float* fresh, int64_t j, int64_t past, int64_t ring,
                   int64_t stride) {
  if (j >= past) return fresh + (j - past) * stride;
  return cache + (ring > 0 ? j % ring : j) * stride;
}

}  // namespace

float AttentionScale(int64_t head_dim) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

void AttentionRef(const float* q, const KvSource& kv, int64_t t_new, int64_t n_heads,
                  int64_t n_kv_heads, int64_t head_dim, const AttentionParams& params, float* out,
                  int threads) {
  DF11_CHECK(t_new >= 0 && kv.past >= 0);
  DF11_CHECK(params.window >= 0);
  DF11_CHECK(kv.ring == 0 || (params.window > 0 && kv.ring >= params.window));
  DF11_CHECK(n_kv_heads >= 1 && n_heads >= n_kv_heads && n_heads % n_kv_heads == 0);
  DF11_CHECK(head_dim >= 1);
  if (t_new == 0) return;
  DF11_CHECK(q != nullptr && kv.k_new != nullptr && kv.v_new != nullptr && out != nullptr);
  DF11_CHECK(kv.past == 0 || (kv.k_cache != nullptr && kv.v_cache != nullptr));
  const int64_t group = n_heads / n_kv_heads;
  const float scale = params.scale, cap = params.softcap;
  const int64_t q_stride = n_heads * head_dim;      // between tokens of q and out
  const int64_t kv_stride = n_kv_heads * head_dim;  // between positions of the cache
  const int64_t t_total = kv.past + t_new;
  ParallelFor(n_heads, threads, 1, [&](int64_t h_begin, int64_t h_end) {
    std::vector<float> probs(static_cast<size_t>(t_total));
    for (int64_t h = h_begin; h < h_end; ++h) {
      const int64_t head = (h / group) * head_dim;
      auto k_row = [&](int64_t j) {
        return RowOf(kv.k_cache, kv.k_new, j, kv.past, kv.ring, kv_stride) + head;
      };
      auto v_row = [&](int64_t j) {
        return RowOf(kv.v_cache, kv.v_new, j, kv.past, kv.ring, kv_stride) + head;
      };
      for (int64_t i = 0; i < t_new; ++i) {
        const float* qi = q + i * q_stride + h * head_dim;
        float* oi = out + i * q_stride + h * head_dim;
        const int64_t end = kv.past + i + 1;  // positions first .. own position
        const int64_t first = params.window > 0 ? std::max<int64_t>(0, end - params.window) : 0;
        float max_score = -INFINITY;
        for (int64_t j = first; j < end; ++j) {
          float s = Dot(qi, k_row(j), head_dim) * scale;
          if (cap > 0) s = std::tanh(s / cap) * cap;
          probs[j] = s;
          max_score = std::max(max_score, s);
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
          const float* vj = v_row(j);
          for (int64_t d = 0; d < head_dim; ++d) oi[d] += p * vj[d];
        }
      }
    }
  });
}

void KvAppendRef(const float* k_new, const float* v_new, int64_t t_new, int64_t row, int64_t past,
                 int64_t ring, float* k_cache, float* v_cache) {
  DF11_CHECK(t_new >= 0 && row >= 1 && past >= 0 && ring >= 0);
  const int64_t first = ring > 0 ? std::max<int64_t>(0, t_new - ring) : 0;
  for (int64_t i = first; i < t_new; ++i) {
    const int64_t pos = past + i;
    const int64_t slot = ring > 0 ? pos % ring : pos;
    std::memcpy(k_cache + slot * row, k_new + i * row, sizeof(float) * row);
    std::memcpy(v_cache + slot * row, v_new + i * row, sizeof(float) * row);
  }
}

}  // namespace df11
