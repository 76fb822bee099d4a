// SPDX-License-Identifier: Apache-2.0
// CpuBackend: the forward pass of one rank's slice on the host (FP32 math on BF16 weights,
// GemmBf16Cpu, threads), the project's oracle and embedded default. The layer is forward.cc's;
// this file implements its ops (LayerOps) on host memory. DF11 matrices are decoded into one of
// two reused scratch buffers right before their layer (BeginLayer); the next layer's decode runs
// on a helper thread while the current layer computes. ew4 matrices are multiplied by the fused
// decode-GEMV (Ew4GemvCpu) for steps of up to kEw4GemvMaxBatch tokens, and decoded into a
// one-matrix scratch right before the BF16 GEMM for larger steps.
// Not thread-safe: one CpuBackend per rank, called from one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <span>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/model/forward_backend.h"
#include "runtime/model/forward_options.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/kv_pool.h"
#include "runtime/model/layer_ops.h"
#include "runtime/model/model_weights.h"

namespace df11 {

// Sums a buffer across the tensor-parallel group in place (null on a single rank).
using AllReduceFn = std::function<void(float* data, int64_t n)>;

struct CpuBackendOptions {
  ForwardOptions forward;        // as the user chose (forward_options.h): threads, overlap
  int64_t lm_head_chunk = 8192;  // LM-head rows per GEMM (bounds its scratch)
  AllReduceFn all_reduce;        // tensor-parallel sum; null when tp = 1
  bool tp_leader = true;         // adds row-parallel biases (only one rank may)
  // Host memory the KV caches may take together: KvTokenBudget() is what it holds (in
  // KvCacheTokens). 0: no limit.
  int64_t kv_memory_bytes = 0;
};

class CpuBackend : public ForwardBackend, private LayerOps {
 public:
  CpuBackend(const ModelWeights* weights, const CpuBackendOptions& options);
  ~CpuBackend() override;

  // A cache of `capacity` positions: blocks of this rank's KV pool (BF16, paged).
  KvCache NewCache(int64_t capacity) const override;
  int64_t KvBlockTokens() const override { return kv_pool_->block_tokens(); }
  bool VerifiesDrafts() const override { return true; }
  bool KvSlidingGroup() const override { return true; }

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
  // options.kv_memory_bytes over the bytes a position takes in this rank's caches (BF16).
  int64_t KvTokenBudget() const override;

 private:
  // LayerOps on host memory.
  Status BeginLayer(size_t layer) override;
  void EndLayer(size_t layer) override;
  void RmsNorm(const float* x, const Vector& w, float weight_offset, float eps, int64_t rows,
               int64_t cols, float* out) override;
  void Linear(const float* x, int64_t tokens, const Weight& w, const Vector* bias,
              float* y) override;
  void Rope(float* x, int64_t heads, bool local) override;
  void Attention(size_t layer, const float* q, const float* k, const float* v,
                 const AttentionParams& params, float* out) override;
  void GatedActivation(GateActivation act, float* gate, const float* up, int64_t n) override;
  void Add(float* x, const float* y, int64_t n) override;
  void Softcap(float* x, int64_t n, float cap) override;
  void AllReduce(float* x, int64_t n) override;
  Status LmHead(const float* x, int64_t rows, const Weight& head, float* logits) override;

  // Decodes layer `layer`'s compressed matrices into scratch_[layer % 2] (placed_ points at
  // them); BF16 matrices are used where they are mapped.
  Status Materialize(size_t layer);
  Status DecodeInto(const Weight& m, int64_t row_begin, int64_t row_end, uint16_t* out);

  const ModelWeights* w_;
  CpuBackendOptions options_;
  int threads_;
  // The rotary tables: [0] global, [1] local (Gemma 3's sliding layers; the global one's copy
  // otherwise), and their cos/sin factors (yarn's attention factor).
  std::vector<float> inv_freq_[2];
  float rope_scaling_[2] = {1.0f, 1.0f};
  std::vector<uint16_t> scratch_[2];    // double buffer for the per-layer decode
  std::vector<uint16_t> head_scratch_;  // one LM-head chunk, decoded
  std::vector<const uint16_t*> placed_;  // by Weight::id: where Linear reads the matrix
  std::future<Status> decoding_;         // the decode of the next layer, when overlapped
  std::shared_ptr<KvPool> kv_pool_;      // every cache's K and V (shared: caches give blocks back)
  std::vector<float> kv_rows_;           // Attention: the visible K/V rows of a step, as FP32

  // The step being run (RunLayers).
  std::span<const SequenceStep> steps_;
  std::vector<int32_t> positions_;  // (T) each token's position in its sequence
};

}  // namespace df11
