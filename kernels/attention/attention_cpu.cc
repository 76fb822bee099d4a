// SPDX-License-Identifier: Apache-2.0
// AttentionCpu: the work items are (sequence, head, block of kQueryBlock queries), so a decode
// step of many short sequences and a long prefill both spread over the threads; each item runs
// attention_head.h's AttendHead compiled for ActiveCpuLevel().
#include <algorithm>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/attention/attention_head.h"
#include "kernels/common/check.h"
#include "kernels/common/cpu_features.h"
#include "kernels/common/parallel_for.h"

namespace df11 {
namespace {

using attention_internal::AttendHead;
using attention_internal::HeadDims;

constexpr int64_t kQueryBlock = 16;

using AttendFn = void (*)(const AttentionSequence&, const HeadDims&, const AttentionParams&,
                          int64_t, int64_t, int64_t, float*);

void AttendScalar(const AttentionSequence& s, const HeadDims& d, const AttentionParams& p,
                  int64_t h, int64_t q0, int64_t q1, float* probs) {
  AttendHead(s, d, p, h, q0, q1, probs);
}

#if DF11_HAS_X86_LEVELS
DF11_TARGET_AVX2 void AttendAvx2(const AttentionSequence& s, const HeadDims& d,
                                 const AttentionParams& p, int64_t h, int64_t q0, int64_t q1,
                                 float* probs) {
  AttendHead(s, d, p, h, q0, q1, probs);
}

DF11_TARGET_AVX512 void AttendAvx512(const AttentionSequence& s, const HeadDims& d,
                                     const AttentionParams& p, int64_t h, int64_t q0, int64_t q1,
                                     float* probs) {
  AttendHead(s, d, p, h, q0, q1, probs);
}
#endif

AttendFn AttendFor(CpuLevel level) {
  switch (level) {
#if DF11_HAS_X86_LEVELS
    case CpuLevel::kAvx512Bf16:
    case CpuLevel::kAvx512:
      return AttendAvx512;
    case CpuLevel::kAvx2:
      return AttendAvx2;
#endif
    default:
      return AttendScalar;
  }
}

struct Item {
  int64_t sequence, head, q_begin, q_end;
};

}  // namespace

void AttentionCpu(std::span<const AttentionSequence> sequences, int64_t n_heads,
                  int64_t n_kv_heads, int64_t head_dim, const AttentionParams& params,
                  int threads) {
  DF11_CHECK(params.window >= 0);
  DF11_CHECK(n_kv_heads >= 1 && n_heads >= n_kv_heads && n_heads % n_kv_heads == 0);
  DF11_CHECK(head_dim >= 1);
  std::vector<Item> items;
  int64_t longest = 0;
  for (size_t i = 0; i < sequences.size(); ++i) {
    const AttentionSequence& s = sequences[i];
    const KvSource& kv = s.kv;
    DF11_CHECK(s.t_new >= 0 && kv.past >= 0);
    if (s.t_new == 0) continue;
    DF11_CHECK(s.q != nullptr && kv.k_new != nullptr && kv.v_new != nullptr && s.out != nullptr);
    DF11_CHECK(kv.past == 0 || (kv.k_cache != nullptr && kv.v_cache != nullptr));
    longest = std::max(longest, kv.past + s.t_new);
    for (int64_t h = 0; h < n_heads; ++h) {
      for (int64_t q = 0; q < s.t_new; q += kQueryBlock) {
        items.push_back({static_cast<int64_t>(i), h, q, std::min(s.t_new, q + kQueryBlock)});
      }
    }
  }
  const HeadDims d{n_heads, n_kv_heads, head_dim};
  const AttendFn attend = AttendFor(ActiveCpuLevel());
  ParallelFor(static_cast<int64_t>(items.size()), threads, 1, [&](int64_t i0, int64_t i1) {
    thread_local std::vector<float> probs;
    if (static_cast<int64_t>(probs.size()) < longest) probs.resize(static_cast<size_t>(longest));
    for (int64_t i = i0; i < i1; ++i) {
      const Item& it = items[i];
      attend(sequences[it.sequence], d, params, it.head, it.q_begin, it.q_end, probs.data());
    }
  });
}

}  // namespace df11
