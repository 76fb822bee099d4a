// SPDX-License-Identifier: Apache-2.0
#include "runtime/engine/engine_stats.h"

#include <algorithm>
#include <cmath>

namespace df11 {

double Quantile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  // Nearest rank: the ceil(q * n)-th smallest (1-based), the smallest for q <= 0.
  const double rank = std::ceil(q * static_cast<double>(values.size()));
  const size_t k = rank < 1 ? 0 : std::min(values.size(), static_cast<size_t>(rank)) - 1;
  std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(k), values.end());
  return values[k];
}

void RecordStep(int64_t prompt_tokens, int64_t tokens, double seconds, EngineStats* stats) {
  if (prompt_tokens > 0) {
    stats->prefill_seconds += seconds;
    ++stats->prefill_steps;
    stats->prompt_tokens += prompt_tokens;
  } else {
    stats->decode_seconds += seconds;
    ++stats->decode_steps;
    stats->decode_tokens += tokens;
  }
}

void LatencySampler::Record(const GenerationResult& result, EngineStats* stats) {
  const int64_t n = ++stats->served_requests;
  if (stats->first_token_seconds.size() < capacity_) {
    stats->first_token_seconds.push_back(result.first_token_seconds);
    stats->finish_seconds.push_back(result.finish_seconds);
    return;
  }
  const uint64_t j = rng_() % static_cast<uint64_t>(n);
  if (j < capacity_) {
    stats->first_token_seconds[j] = result.first_token_seconds;
    stats->finish_seconds[j] = result.finish_seconds;
  }
}

}  // namespace df11
