// SPDX-License-Identifier: Apache-2.0
// The generation loop. Up to batch_size sequences run at once; each step decodes one token for
// every running sequence and takes the whole prompts of the requests just admitted (one forward
// pass over the weights for both: with DF11 every pass decodes every layer). With continuous
// batching (the default) a finished sequence's place goes to the next waiting request at once, so
// a batch does not shrink while short answers wait for long ones; the static mode admits a new
// batch only when the last one has finished. A KV budget, in tokens, bounds the sum over running
// sequences of prompt + max new tokens (what their caches hold at most); requests wait, in order,
// for room. Sampling uses a per-request RNG seeded from the request, so a request's tokens do not
// depend on what else runs beside it. The forward step itself is behind StepRunner, so the same
// loop drives one rank or a distributed group.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <random>
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
  // From the start of the Generate call that served it (so waiting for a place counts): the
  // step that gave its first token (0-based, -1: none) and the seconds to that token and to the
  // end of its last step.
  int64_t first_token_step = -1;
  double first_token_seconds = -1;
  double finish_seconds = -1;
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
  // The sequence of `cache` has finished: its cache may be freed (a distributed group frees it on
  // every rank). The local runner frees caches with their last copy and needs nothing here.
  virtual void Release(const KvCache& cache) { (void)cache; }
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
  int64_t batch_size = 8;          // most sequences running at once
  bool continuous = true;          // refill the batch as sequences finish (false: static batches)
  // KV budget in tokens over the running sequences, each counted as prompt + max new tokens;
  // 0: no limit. A request that alone needs more gets an error naming both figures.
  int64_t kv_tokens = 0;
  // Most tokens one forward step takes (decoding sequences' tokens and prompt chunks); a prompt
  // that does not fit is prefilled over several steps. 0: no limit.
  int64_t max_step_tokens = 0;
  // Most requests whose latencies EngineStats keeps (a uniform sample beyond that).
  size_t latency_samples = size_t{1} << 20;
  std::vector<int32_t> eos_ids;    // generation stops at any of these
  const Tokenizer* tokenizer = nullptr;  // for text and stop strings; null: ids only
};

// Steps that take new prompts (alone, or beside running sequences' tokens under continuous
// batching) count as prefill; the others as decode.
struct EngineStats {
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;  // in all steps (a prefill step gives each prompt its first)
  int64_t decode_tokens = 0;     // in decode steps
  int64_t prefill_steps = 0;
  int64_t decode_steps = 0;
  int64_t peak_kv_tokens = 0;  // most KV tokens reserved at once (prompt + max new tokens each)
  // GenerationResult's first_token_seconds and finish_seconds of the served requests (pairs at
  // the same index); past EngineOptions::latency_samples requests a uniform sample of them
  // (reservoir), so a long-running worker's memory stays bounded.
  std::vector<double> first_token_seconds;
  std::vector<double> finish_seconds;
  int64_t served_requests = 0;  // requests behind those samples
};

// The q-quantile (0..1, nearest rank) of `values`; 0 when empty.
double Quantile(std::vector<double> values, double q);

// Called once per request as soon as its result is final (errors at admission, the others when
// they stop), with its index in the requests given to Generate. A non-OK Status stops Generate,
// which returns it.
using ResultCallback = std::function<Status(size_t index, GenerationResult result)>;

class Engine {
 public:
  Engine(StepRunner* runner, const EngineOptions& options) : runner_(runner), options_(options) {}

  // Serves every request, admitting them in order; a request that cannot be served gets `error`
  // set and the rest go on. Each result goes to `on_result` as soon as it is final, so results
  // come out in the order requests finish and only running ones are held in memory. A non-OK
  // Status means the model itself failed (corrupt weights) or `on_result` did; results already
  // passed to `on_result` stay delivered.
  Status Generate(std::span<const GenerationRequest> requests, const ResultCallback& on_result);
  // The same, returning the results in request order.
  StatusOr<std::vector<GenerationResult>> Generate(std::span<const GenerationRequest> requests);
  const EngineStats& stats() const { return stats_; }

 private:
  void RecordLatency(const GenerationResult& r);

  StepRunner* runner_;
  EngineOptions options_;
  EngineStats stats_;
  std::mt19937_64 latency_rng_{1};  // picks the reservoir's replacements
};

}  // namespace df11
