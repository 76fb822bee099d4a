// SPDX-License-Identifier: Apache-2.0
// Which slice of the model each rank holds, as pure functions over plain sizes (gpt-fast tp.py
// style); parallel/ depends on nothing in runtime/. Ranks are stage-major (ParallelLayout,
// world.h). Tensor parallel (Megatron): q/k/v and gate/up split by output rows, o and down by
// input columns; embedding and LM head split by vocabulary rows. Every function checks
// divisibility and returns a LayoutResult whose error names the sizes when a layout does not fit
// the model; the runtime's overloads taking a ModelConfig (runtime/formats/model_tensors.h) turn
// it into InvalidArgument.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace df11 {

// Why a parallel layout does not fit a model: a message naming the sizes.
struct LayoutError {
  std::string message;
};

// A value, or the LayoutError that stopped it.
template <typename T>
class LayoutResult {
 public:
  LayoutResult(T value) : value_(std::move(value)) {}  // NOLINT: implicit, like StatusOr
  LayoutResult(LayoutError error) : error_(std::move(error.message)) {}  // NOLINT

  bool ok() const { return error_.empty(); }
  // Empty when ok().
  const std::string& error() const { return error_; }
  // The value; default-constructed when !ok().
  const T& value() const { return value_; }
  const T& operator*() const { return value_; }
  const T* operator->() const { return &value_; }

 private:
  T value_{};
  std::string error_;
};

// A half-open index range [begin, end).
struct Range {
  int64_t begin = 0;
  int64_t end = 0;

  int64_t size() const { return end - begin; }
  bool operator==(const Range&) const = default;
};

// The contiguous layer range of each of `pp` stages. `explicit_counts` empty: balanced, the first
// n_layers % pp stages get one layer more; else one layer count per stage (each >= 1) summing to
// n_layers. An error for pp < 1, fewer layers than stages, or counts that do not fit.
LayoutResult<std::vector<Range>> StageLayers(int64_t n_layers, int pp,
                                             const std::vector<int64_t>& explicit_counts);

// The sizes a tensor-parallel split depends on; messages name them as config.json does.
struct TpDims {
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t intermediate_size = 0;
  int64_t vocab_size = 0;
};

// One tensor-parallel rank's share of a layer and of the vocabulary. Head ranges index heads
// (multiply by head_dim for rows of q/k/v); intermediate and vocab index rows.
struct TpSlices {
  Range q_heads;               // query heads held
  Range kv_heads;              // key/value heads held
  bool kv_replicated = false;  // kv_heads < tp: one kv head, shared by tp / kv_heads ranks
  Range intermediate;          // rows of gate/up, columns of down
  Range vocab;                 // rows of the embedding and the LM head
};

// The slices of tp rank `tp_rank` of `tp`. Requires heads % tp == 0; kv heads split when
// kv_heads >= tp (kv_heads % tp == 0), else replicated (tp % kv_heads == 0; rank r holds kv head
// r * kv_heads / tp, which its query heads use); intermediate % tp == 0; vocabulary cut into tp
// ranges of ceil(vocab / tp) rows, the last possibly shorter but never empty.
LayoutResult<TpSlices> TensorParallelSlices(const TpDims& d, int tp, int tp_rank);

// Rows per tensor-parallel rank of a vocabulary of `vocab` rows: ceil(vocab / tp); rank r holds
// [r * rows, min(vocab, (r + 1) * rows)) (the last slice may be shorter). Requires tp >= 1.
int64_t VocabRowsPerRank(int64_t vocab, int tp);

// dst (r.size(), cols) = src[r.begin:r.end, :] of a BF16 row-major (rows, cols) matrix.
// Fatal (DF11_CHECK) when r is outside [0, rows].
void SliceRows(const uint16_t* src, int64_t rows, int64_t cols, Range r, uint16_t* dst);
// dst (rows, c.size()) = src[:, c.begin:c.end]. Fatal when c is outside [0, cols].
void SliceColumns(const uint16_t* src, int64_t rows, int64_t cols, Range c, uint16_t* dst);

}  // namespace df11
