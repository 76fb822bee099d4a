// SPDX-License-Identifier: Apache-2.0
// The generation loop: requests are served in batches; each batch is prefilled in one forward
// step, then decoded one token per sequence per step until every sequence stops (EOS, a stop
// string, max tokens, or the context). Sampling uses a per-request RNG seeded from the request,
// so a request's text does not depend on what else is in its batch. The forward step itself is
// behind StepRunner, so the same loop drives one rank or a distributed group.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kernels/sampling/sampling.h"
#include "runtime/core/status.h"
#include "runtime/model/kv_cache.h"
#include "runtime/model/forward_backend.h"
#include "runtime/text/tokenizer.h"

namespace df11 {

struct GenerationRequest {
  std::string id;                // echoed in the result (custom_id)
  std::vector<int32_t> prompt;   // token ids, BOS/template already applied
  SamplingParams sampling;
  uint64_t seed = 0;
  int64_t max_tokens = 128;
  std::vector<std::string> stop;  // stop strings; the text ends before the first one
};

struct GenerationResult {
  std::string id;
  std::vector<int32_t> tokens;  // generated ids (EOS excluded)
  std::string text;
  std::string finish_reason;    // "stop" or "length"
  int64_t prompt_tokens = 0;
  std::string error;            // non-empty: the request could not be served
};

// What one forward step returns to the sampling process: the last token's logits of each step,
// (steps, vocab), or — when every sequence decodes greedily — just their argmax, which a
// vocab-parallel group finds without gathering the logits.
struct StepOutput {
  std::vector<float> logits;
  std::vector<int32_t> argmax;  // greedy steps, or the sampled tokens when `sample` was given
  std::vector<uint64_t> rng;    // sampled steps: each sequence's RNG state after its draw
};

// SampleSpec (runtime/model/forward_backend.h): how to sample one sequence of a step; the runner
// draws on the process that holds the full logits (a distributed group's last stage), so they
// never travel to the leader.

// One forward step over a batch: appends each step's tokens to its cache.
class StepRunner {
 public:
  virtual ~StepRunner() = default;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t context_length() const = 0;
  virtual KvCache NewCache(int64_t capacity) = 0;
  // With `sample` (one spec per step, greedy_only false) the runner returns sampled tokens and
  // RNG states instead of logits.
  virtual Status Step(std::span<const SequenceStep> steps, bool greedy_only, StepOutput* out,
                      std::span<const SampleSpec> sample = {}) = 0;
};

// StepRunner on one process, over any backend (greedy steps use its ForwardArgmax).
class LocalStepRunner : public StepRunner {
 public:
  explicit LocalStepRunner(ForwardBackend* backend) : t_(backend) {}
  int64_t vocab_size() const override { return t_->weights().config.vocab_size; }
  int64_t context_length() const override {
    return t_->weights().config.max_position_embeddings;
  }
  KvCache NewCache(int64_t capacity) override { return t_->NewCache(capacity); }
  Status Step(std::span<const SequenceStep> steps, bool greedy_only, StepOutput* out,
              std::span<const SampleSpec> sample = {}) override;

 private:
  ForwardBackend* t_;
};

struct EngineOptions {
  int64_t batch_size = 8;          // sequences decoded together
  std::vector<int32_t> eos_ids;    // generation stops at any of these
  const Tokenizer* tokenizer = nullptr;  // for text and stop strings; null: ids only
};

struct EngineStats {
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
};

class Engine {
 public:
  Engine(StepRunner* runner, const EngineOptions& options) : runner_(runner), options_(options) {}

  // Serves every request; a request that cannot be served gets `error` set and the rest go on.
  // A non-OK Status means the model itself failed (corrupt weights).
  StatusOr<std::vector<GenerationResult>> Generate(std::span<const GenerationRequest> requests);
  const EngineStats& stats() const { return stats_; }

 private:
  Status GenerateBatch(std::span<const GenerationRequest> requests,
                       std::span<GenerationResult> results);

  StepRunner* runner_;
  EngineOptions options_;
  EngineStats stats_;
};

}  // namespace df11
