// SPDX-License-Identifier: Apache-2.0
// The decoder-only transformer forward pass on the CPU (FP32 math on BF16 weights), written once
// for Llama, Qwen2 (q/k/v biases), Qwen3 (q/k norms) and Mistral, with the config's gate
// activation, rope scaling and per-layer sliding window, for any local slice of the model
// (tensor-parallel ranks hold head/row/column/vocab slices; pipeline stages hold a layer range).
// DF11 layers are decoded into a reused scratch buffer right before their matmuls; the next
// layer's decode runs on a helper thread while the current layer computes.
// Not thread-safe: one Transformer per rank, called from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <span>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/model/forward_backend.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/model_weights.h"

namespace df11 {

// Sums a buffer across the tensor-parallel group in place (null on a single rank).
using AllReduceFn = std::function<void(float* data, int64_t n)>;

struct TransformerOptions {
  int threads = 0;            // 0: all hardware threads
  bool overlap_decode = true; // decode layer i+1 while layer i computes
  int64_t lm_head_chunk = 8192;  // LM-head rows per GEMM (bounds its scratch)
  AllReduceFn all_reduce;     // tensor-parallel sum; null when tp = 1
  bool tp_leader = true;      // adds row-parallel biases (only one rank may)
  // Host memory the KV caches may take together: KvTokenBudget() is what it holds. 0: no limit.
  int64_t kv_memory_bytes = 0;
};

class Transformer : public ForwardBackend {
 public:
  Transformer(const ModelWeights* weights, const TransformerOptions& options);
  ~Transformer() override;

  // A cache sized for `capacity` positions of this rank's layers and kv heads.
  KvCache NewCache(int64_t capacity) const override;

  // hidden (total_tokens, hidden) = embedding of every step's tokens (local vocab rows; the
  // caller all-reduces across a vocab-parallel group). Rows follow the steps in order.
  Status Embed(std::span<const SequenceStep> steps, float* hidden) override;
  // Runs this rank's layers on hidden in place and appends to the caches (lengths advance).
  Status RunLayers(std::span<const SequenceStep> steps, float* hidden) override;
  // Logits of this rank's vocab rows, (rows, vocab_rows), for the last token of each step, or
  // every token when all_tokens. `hidden` is the output of the last layer.
  Status Logits(std::span<const SequenceStep> steps, const float* hidden, bool all_tokens,
                std::vector<float>* logits) override;

  // Embed + RunLayers + Logits on one rank. Errors: a DF11 stream found corrupt while decoding.
  Status Forward(std::span<const SequenceStep> steps, bool all_tokens,
                 std::vector<float>* logits) override;

  const ModelWeights& weights() const override { return *w_; }
  int64_t ScratchBytes() const override;
  // options.kv_memory_bytes over the bytes a position takes in this rank's caches.
  int64_t KvTokenBudget() const override;

 private:
  struct LayerView;  // a layer's matrices as BF16 pointers (mapped or in scratch)
  // Points the layer's matrices at mapped BF16 data or decodes them into `scratch`.
  Status Materialize(size_t layer, std::vector<uint16_t>* scratch, LayerView* view);
  Status DecodeInto(const MatrixRef& m, int64_t row_begin, int64_t row_end, uint16_t* out);

  const ModelWeights* w_;
  TransformerOptions options_;
  int threads_;
  std::vector<float> inv_freq_;
  float rope_scaling_ = 1.0f;         // cos/sin factor (yarn's attention factor)
  std::vector<uint16_t> scratch_[2];  // double buffer for the per-layer decode
  std::vector<uint16_t> head_scratch_;
};

}  // namespace df11
