// SPDX-License-Identifier: Apache-2.0
// StepRunner: one forward step over a batch of sequences, whatever runs it (LocalStepRunner on
// one process, DistributedStepRunner over a tensor- and pipeline-parallel group), so the same
// generation loop drives either. A step appends each sequence's new tokens to its cache and
// returns, per sequence, its next token (greedy or sampled) or its last token's logits.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/model/forward_backend.h"
#include "runtime/model/kv_cache.h"

namespace df11 {

// What one forward step returns to the sampling process, one entry per sequence of the step
// (in the step's order): the last token's logits, (sequences, vocab), or — for a greedy step or
// one given SampleSpecs — each sequence's next token, which a vocab-parallel group finds without
// gathering the logits to the leader.
// A step with drafted tokens (SequenceStep::drafts > 0 for some sequence; greedy or given
// SampleSpecs) verifies them where the logits are (VerifyDrafts): `counts` then holds how many
// tokens each sequence took (the accepted drafts and the target's next token), and `tokens`
// those tokens, sequence after sequence.
struct StepOutput {
  std::vector<float> logits;
  std::vector<int32_t> tokens;  // greedy steps: the argmax; sampled steps: the drawn token
  std::vector<uint64_t> rng;    // sampled steps: each sequence's RNG state after its draw(s)
  std::vector<int32_t> counts;  // steps with drafts: tokens per sequence; else empty (one each)
};

// Whether any step carries drafted tokens.
bool HasDrafts(std::span<const SequenceStep> steps);

// SampleSpec (runtime/model/forward_backend.h): how to sample one sequence of a step; the runner
// draws on the process that holds the full logits (a distributed group's last stage), so they
// never travel to the leader.

class StepRunner {
 public:
  virtual ~StepRunner() = default;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t context_length() const = 0;
  virtual KvCache NewCache(int64_t capacity) = 0;
  // The KV budget tokens a cache of `capacity` positions takes (KvCacheTokens over the model's
  // layers: less than `capacity` when sliding-window layers keep only their window).
  virtual int64_t KvTokens(int64_t capacity) const { return capacity; }
  // ForwardBackend::KvBlockTokens of the backend (0 for a distributed group for now).
  virtual int64_t kv_block_tokens() const { return 0; }
  // ForwardBackend::VerifiesDrafts of the backend: steps may carry drafted tokens.
  virtual bool verifies_drafts() const { return false; }
  // The model's layer windows (0: full attention) where the backend keeps the sliding-window
  // layers' blocks in their own group (ForwardBackend::KvSlidingGroup); empty where it does not.
  virtual std::vector<int64_t> kv_group_windows() const { return {}; }
  // ForwardBackend::KvPlanContext of the backend: the sequence length the groups are split for.
  virtual int64_t kv_plan_context() const { return context_length(); }
  // ForwardBackend::KvPlanStep of the backend: the step the groups are split for (0: none).
  virtual int64_t kv_plan_step() const { return 0; }
  // With `sample` (one spec per sequence, greedy_only false) the runner returns sampled tokens
  // and RNG states instead of logits.
  virtual Status Step(std::span<const SequenceStep> steps, bool greedy_only, StepOutput* out,
                      std::span<const SampleSpec> sample = {}) = 0;
  // The sequence of `cache` has finished: its cache may be freed (a distributed group frees it on
  // every rank). The local runner frees caches with their last copy and needs nothing here.
  virtual void Release(const KvCache& cache) { (void)cache; }
};

// StepRunner on one process, over any backend (greedy steps use its ForwardArgmax).
class LocalStepRunner : public StepRunner {
 public:
  explicit LocalStepRunner(ForwardBackend* backend) : backend_(backend) {}
  int64_t vocab_size() const override { return backend_->weights().config.vocab_size; }
  int64_t context_length() const override {
    return backend_->weights().config.max_position_embeddings;
  }
  KvCache NewCache(int64_t capacity) override { return backend_->NewCache(capacity); }
  int64_t KvTokens(int64_t capacity) const override {
    return KvCacheTokens(backend_->weights().config.layer_window, capacity);
  }
  int64_t kv_block_tokens() const override { return backend_->KvBlockTokens(); }
  bool verifies_drafts() const override { return backend_->VerifiesDrafts(); }
  std::vector<int64_t> kv_group_windows() const override {
    if (!backend_->KvSlidingGroup()) return {};
    return backend_->weights().config.layer_window;
  }
  int64_t kv_plan_context() const override { return backend_->KvPlanContext(); }
  int64_t kv_plan_step() const override { return backend_->KvPlanStep(); }
  Status Step(std::span<const SequenceStep> steps, bool greedy_only, StepOutput* out,
              std::span<const SampleSpec> sample = {}) override;

 private:
  // A step verifying drafts: the logits of every drafted position, verified on the host.
  Status StepWithDrafts(std::span<const SequenceStep> steps, bool greedy_only, StepOutput* out,
                        std::span<const SampleSpec> sample);

  ForwardBackend* backend_;
};

}  // namespace df11
