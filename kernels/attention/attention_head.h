// SPDX-License-Identifier: Apache-2.0
// The math of one (sequence, head) and a range of its queries, shared by AttentionRef and every
// level of AttentionCpu (internal to kernels/attention). Written in fixed orders with lane-wise
// vector arithmetic and built with -ffp-contract=off (no multiply-add is fused), so the compiler
// vectorises it for each level without changing a rounding: every level gives the same bits.
// Per query: scores q·k (DotInLanes) times the scale, soft-capped when asked (/ cap, tanh, * cap,
// as transformers does), max-subtracted exponentials summed in position order, probabilities
// normalised first (as HF's softmax), then out[d] += p_j * v_j[d] over positions in order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/attention/attention.h"

namespace df11::attention_internal {

struct HeadDims {
  int64_t n_heads, n_kv_heads, head_dim;
};

// Where position j's row is: the cache before the step, the new rows after.
[[gnu::always_inline]] inline const float* RowOf(const float* cache, const float* fresh,
                                                 int64_t j, int64_t past, int64_t stride) {
  return j >= past ? fresh + (j - past) * stride : cache + j * stride;
}

// 16 floats as one value: GCC lowers the arithmetic to ZMM, YMM pairs or XMM quadruples by the
// level a function is compiled for, lane by lane, so the results are the same.
using Lanes16 = float __attribute__((vector_size(64)));
using Lanes8 = float __attribute__((vector_size(32)));
using Lanes4 = float __attribute__((vector_size(16)));

// sum_i a[i] * b[i]: 16 lanes s_l += a[16q + l] * b[16q + l] (product rounded, then the sum),
// lanes added 8, 4, 2 and 1 apart, then the n % 16 tail in order.
[[gnu::always_inline]] inline float DotInLanes(const float* a, const float* b, int64_t n) {
  Lanes16 s = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    Lanes16 va, vb;
    std::memcpy(&va, a + i, sizeof(va));
    std::memcpy(&vb, b + i, sizeof(vb));
    s += va * vb;
  }
  Lanes8 lo, hi;
  std::memcpy(&lo, &s, sizeof(lo));
  std::memcpy(&hi, reinterpret_cast<const char*>(&s) + sizeof(lo), sizeof(hi));
  const Lanes8 s8 = lo + hi;
  Lanes4 lo4, hi4;
  std::memcpy(&lo4, &s8, sizeof(lo4));
  std::memcpy(&hi4, reinterpret_cast<const char*>(&s8) + sizeof(lo4), sizeof(hi4));
  const Lanes4 s4 = lo4 + hi4;
  float sum = (s4[0] + s4[2]) + (s4[1] + s4[3]);
  for (; i < n; ++i) sum += a[i] * b[i];
  return sum;
}

// Queries [q_begin, q_end) of head h of sequence s; `probs` holds s.kv.past + s.t_new floats.
[[gnu::always_inline]] inline void AttendHead(const AttentionSequence& s, const HeadDims& d,
                                              const AttentionParams& params, int64_t h,
                                              int64_t q_begin, int64_t q_end, float* probs) {
  const int64_t hd = d.head_dim, group = d.n_heads / d.n_kv_heads;
  const float scale = params.scale, cap = params.softcap;
  const int64_t q_stride = d.n_heads * hd;      // between tokens of q and out
  const int64_t kv_stride = d.n_kv_heads * hd;  // between positions of the cache
  const int64_t head = (h / group) * hd;
  const KvSource& kv = s.kv;
  for (int64_t i = q_begin; i < q_end; ++i) {
    const float* qi = s.q + i * q_stride + h * hd;
    float* oi = s.out + i * q_stride + h * hd;
    const int64_t end = kv.past + i + 1;  // positions first .. own position
    const int64_t first = params.window > 0 ? std::max<int64_t>(0, end - params.window) : 0;
    float max_score = -INFINITY;
    for (int64_t j = first; j < end; ++j) {
      const float* kj = RowOf(kv.k_cache, kv.k_new, j, kv.past, kv_stride) + head;
      float score = DotInLanes(qi, kj, hd) * scale;
      if (cap > 0) score = std::tanh(score / cap) * cap;
      probs[j] = score;
      max_score = std::max(max_score, score);
    }
    float sum = 0.0f;
    for (int64_t j = first; j < end; ++j) {
      probs[j] = std::exp(probs[j] - max_score);
      sum += probs[j];
    }
    const float inv_sum = 1.0f / sum;
    std::fill(oi, oi + hd, 0.0f);
    for (int64_t j = first; j < end; ++j) {
      const float p = probs[j] * inv_sum;
      const float* vj = RowOf(kv.v_cache, kv.v_new, j, kv.past, kv_stride) + head;
      for (int64_t e = 0; e < hd; ++e) oi[e] += p * vj[e];
    }
  }
}

}  // namespace df11::attention_internal
