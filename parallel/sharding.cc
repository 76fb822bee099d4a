// SPDX-License-Identifier: Apache-2.0
#include "parallel/sharding.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "kernels/common/check.h"

namespace df11 {
namespace {

std::string S(int64_t v) { return std::to_string(v); }

}  // namespace

LayoutResult<std::vector<Range>> StageLayers(int64_t n_layers, int pp,
                                             const std::vector<int64_t>& explicit_counts) {
  if (pp < 1) return LayoutError{"pipeline stages (pp) must be >= 1; got " + S(pp)};
  if (n_layers < pp) {
    return LayoutError{"cannot split " + S(n_layers) + " layers into " + S(pp) +
                       " pipeline stages: every stage needs at least one layer"};
  }
  std::vector<int64_t> counts = explicit_counts;
  if (counts.empty()) {
    for (int s = 0; s < pp; ++s) counts.push_back(n_layers / pp + (s < n_layers % pp ? 1 : 0));
  } else {
    if (static_cast<int64_t>(counts.size()) != pp) {
      return LayoutError{"stage layer counts: got " + S(counts.size()) + " counts for " + S(pp) +
                         " pipeline stages"};
    }
    int64_t sum = 0;
    for (size_t s = 0; s < counts.size(); ++s) {
      if (counts[s] < 1) {
        return LayoutError{"stage layer counts: stage " + S(s) + " has " + S(counts[s]) +
                           " layers; every stage needs at least one"};
      }
      sum += counts[s];
    }
    if (sum != n_layers) {
      return LayoutError{"stage layer counts sum to " + S(sum) + " but the model has " +
                         S(n_layers) + " layers"};
    }
  }
  std::vector<Range> stages;
  int64_t begin = 0;
  for (int64_t n : counts) {
    stages.push_back({begin, begin + n});
    begin += n;
  }
  return stages;
}

LayoutResult<TpSlices> TensorParallelSlices(const TpDims& d, int tp, int tp_rank) {
  if (tp < 1) {
    return LayoutError{"tensor parallel size (tp) must be >= 1; got " + S(tp)};
  }
  if (tp_rank < 0 || tp_rank >= tp) {
    return LayoutError{"tp rank " + S(tp_rank) + " outside [0, " + S(tp) + ")"};
  }
  const int64_t heads = d.num_attention_heads;
  const int64_t kv = d.num_key_value_heads;
  if (heads % tp != 0) {
    return LayoutError{"num_attention_heads " + S(heads) + " is not divisible by tp " + S(tp)};
  }
  if (kv < 1 || heads % kv != 0) {
    return LayoutError{"num_attention_heads " + S(heads) +
                       " is not divisible by num_key_value_heads " + S(kv)};
  }
  TpSlices s;
  const int64_t q_per_rank = heads / tp;
  s.q_heads = {tp_rank * q_per_rank, (tp_rank + 1) * q_per_rank};
  if (kv >= tp) {
    if (kv % tp != 0) {
      return LayoutError{"num_key_value_heads " + S(kv) + " is not divisible by tp " + S(tp)};
    }
    s.kv_heads = {tp_rank * (kv / tp), (tp_rank + 1) * (kv / tp)};
  } else {
    if (tp % kv != 0) {
      return LayoutError{"tp " + S(tp) + " is not a multiple of num_key_value_heads " + S(kv) +
                         " (kv heads are replicated when fewer than tp)"};
    }
    const int64_t head = static_cast<int64_t>(tp_rank) * kv / tp;
    s.kv_heads = {head, head + 1};
    s.kv_replicated = true;
  }
  // Query head h attends with kv head h / (heads / kv); all of this rank's must be its own.
  const int64_t group = heads / kv;
  if (s.q_heads.begin / group < s.kv_heads.begin || (s.q_heads.end - 1) / group >= s.kv_heads.end) {
    return LayoutError{"tp " + S(tp) + " rank " + S(tp_rank) + ": query heads [" +
                       S(s.q_heads.begin) + ", " + S(s.q_heads.end) +
                       ") do not map onto its kv heads [" + S(s.kv_heads.begin) + ", " +
                       S(s.kv_heads.end) + ")"};
  }
  if (d.intermediate_size % tp != 0) {
    return LayoutError{"intermediate_size " + S(d.intermediate_size) + " is not divisible by tp " +
                       S(tp)};
  }
  const int64_t inter = d.intermediate_size / tp;
  s.intermediate = {tp_rank * inter, (tp_rank + 1) * inter};
  const int64_t per = VocabRowsPerRank(d.vocab_size, tp);
  if (d.vocab_size < 1 || (tp - 1) * per >= d.vocab_size) {
    return LayoutError{"vocab_size " + S(d.vocab_size) + " split into tp " + S(tp) + " ranges of " +
                       S(per) + " rows leaves the last rank empty"};
  }
  s.vocab = {tp_rank * per, std::min(d.vocab_size, (tp_rank + 1) * per)};
  return s;
}

int64_t VocabRowsPerRank(int64_t vocab, int tp) { return (vocab + tp - 1) / tp; }

void SliceRows(const uint16_t* src, int64_t rows, int64_t cols, Range r, uint16_t* dst) {
  DF11_CHECK(0 <= r.begin && r.begin <= r.end && r.end <= rows && cols >= 0);
  std::memcpy(dst, src + r.begin * cols, static_cast<size_t>(r.size() * cols) * sizeof(uint16_t));
}

void SliceColumns(const uint16_t* src, int64_t rows, int64_t cols, Range c, uint16_t* dst) {
  DF11_CHECK(0 <= c.begin && c.begin <= c.end && c.end <= cols && rows >= 0);
  const int64_t n = c.size();
  for (int64_t i = 0; i < rows; ++i) {
    std::memcpy(dst + i * n, src + i * cols + c.begin, static_cast<size_t>(n) * sizeof(uint16_t));
  }
}

}  // namespace df11
