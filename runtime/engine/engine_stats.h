// SPDX-License-Identifier: Apache-2.0
// What the generation loop measures: tokens and seconds of prefill and decode steps, the peak KV
// reservation, and the latencies of served requests (a bounded uniform sample of them, so a
// long-running worker's memory stays bounded). Not thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "runtime/engine/request.h"

namespace df11 {

// Steps that take new prompts (alone, or beside running sequences' tokens under continuous
// batching) count as prefill; the others as decode.
struct EngineStats {
  double prefill_seconds = 0;
  double decode_seconds = 0;
  int64_t prompt_tokens = 0;
  // Each request's generated tokens once (a prefill step gives each prompt its first); those a
  // preempted sequence had generated are thrown away, generated again and counted in
  // recomputed_tokens instead.
  int64_t generated_tokens = 0;
  int64_t recomputed_tokens = 0;
  int64_t decode_tokens = 0;     // taken by sequences in decode steps
  int64_t prefill_steps = 0;
  int64_t decode_steps = 0;
  int64_t peak_kv_tokens = 0;  // most KV tokens reserved at once (prompt + max new tokens each)
  // Paged KV cache (a backend that pages it): the most blocks in use at once, the prompt tokens
  // whose K/V were found in the prefix cache (not computed), and the running sequences preempted
  // (requeued and computed again) because the pool ran dry.
  int64_t peak_kv_blocks = 0;
  int64_t peak_kv_sliding_blocks = 0;  // the sliding-window layers' group, where it is apart
  int64_t prefix_cached_tokens = 0;
  int64_t preemptions = 0;
  // Speculative decoding: tokens drafted and accepted, the steps of decoding sequences that
  // could draft (one per sequence and step) and the tokens those steps gave (tokens per step =
  // speculative_tokens / speculative_steps; 1 without speculation).
  int64_t draft_tokens = 0;
  int64_t accepted_tokens = 0;
  int64_t speculative_steps = 0;
  int64_t speculative_tokens = 0;
  // GenerationResult's first_token_seconds and finish_seconds of the served requests (pairs at
  // the same index); past EngineOptions::latency_samples requests a uniform sample of them
  // (reservoir).
  std::vector<double> first_token_seconds;
  std::vector<double> finish_seconds;
  int64_t served_requests = 0;  // requests behind those samples
};

// The q-quantile (0..1, nearest rank) of `values`; 0 when empty.
double Quantile(std::vector<double> values, double q);

// Adds one step that took `prompt_tokens` prompt tokens (0: a decode step), gave the sequences
// `tokens` new tokens and took `seconds` to `stats`.
void RecordStep(int64_t prompt_tokens, int64_t tokens, double seconds, EngineStats* stats);

// Keeps the latencies of served requests in EngineStats: all of the first `capacity` (at least
// one), then a uniform sample of that many (reservoir sampling, fixed seed).
class LatencySampler {
 public:
  explicit LatencySampler(size_t capacity) : capacity_(capacity < 1 ? 1 : capacity) {}
  void Record(const GenerationResult& result, EngineStats* stats);

 private:
  size_t capacity_;
  std::mt19937_64 rng_{1};  // picks the reservoir's replacements
};

}  // namespace df11
