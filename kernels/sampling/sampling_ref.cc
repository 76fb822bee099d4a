// SPDX-License-Identifier: Apache-2.0
// Filters work on a list of kept token ids. Logit arithmetic (penalty, temperature) is FP32 as in
// torch; probabilities (top-p's cumulative sum, min-p, the draw) are double, which can differ
// from torch's float32 only for tokens sitting exactly on a threshold.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include "kernels/common/check.h"
#include "kernels/sampling/sampling.h"

namespace df11 {
namespace {

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}


void ApplyRepetitionPenalty(float penalty, const int32_t* history, int64_t n_history,
                            int64_t vocab, std::vector<float>* scores) {
  std::vector<int32_t> seen(history, history + n_history);
  std::sort(seen.begin(), seen.end());
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  for (int32_t id : seen) {
    DF11_CHECK(id >= 0 && id < vocab);
    float& s = (*scores)[id];
    s = s < 0 ? s * penalty : s / penalty;
  }
}

// HF TopKLogitsWarper: drop scores below the k-th largest.
void TopK(int top_k, const std::vector<float>& scores, std::vector<int32_t>* kept) {
  if (top_k <= 0 || static_cast<size_t>(top_k) >= kept->size()) return;
  std::vector<float> values;
  values.reserve(kept->size());
  for (int32_t id : *kept) values.push_back(scores[id]);
  std::nth_element(values.begin(), values.begin() + (top_k - 1), values.end(),
                   std::greater<float>());
  const float kth = values[top_k - 1];
  std::erase_if(*kept, [&](int32_t id) { return scores[id] < kth; });
}

// HF TopPLogitsWarper: sort ascending, drop the prefix whose cumulative probability is
// <= 1 - top_p, always keep the largest. Leaves `kept` in descending score order.
void TopP(float top_p, const std::vector<float>& scores, std::vector<int32_t>* kept) {
  if (top_p >= 1.0f) return;
  std::sort(kept->begin(), kept->end(), [&](int32_t a, int32_t b) {
    return scores[a] != scores[b] ? scores[a] > scores[b] : a < b;
  });
  const double max_score = scores[kept->front()];
  std::vector<double> probs(kept->size());
  double total = 0.0;
  for (size_t i = 0; i < kept->size(); ++i) {
    probs[i] = std::exp(static_cast<double>(scores[(*kept)[i]]) - max_score);
    total += probs[i];
  }
  // Ascending cumulative sum from the smallest; count the dropped tail of the descending list.
  const double threshold = (1.0 - static_cast<double>(top_p)) * total;
  double cumulative = 0.0;
  size_t n_keep = kept->size();
  while (n_keep > 1) {
    cumulative += probs[n_keep - 1];
    if (cumulative > threshold) break;
    --n_keep;
  }
  kept->resize(n_keep);
}

// HF MinPLogitsWarper: drop tokens with prob < min_p * max prob; `top` (the argmax) stays.
void MinP(float min_p, int32_t top, const std::vector<float>& scores,
          std::vector<int32_t>* kept) {
  if (min_p <= 0.0f) return;
  const double max_score = scores[top];
  std::erase_if(*kept, [&](int32_t id) {
    return id != top && std::exp(static_cast<double>(scores[id]) - max_score) < min_p;
  });
}

}  // namespace

SamplingField InvalidSamplingField(const SamplingParams& p, const char** rule) {
  auto bad = [&](SamplingField field, const char* text) {
    if (rule != nullptr) *rule = text;
    return field;
  };
  // Written so that NaN fails each test.
  if (!(std::isfinite(p.temperature) && p.temperature >= 0.0f)) {
    return bad(SamplingField::kTemperature, "a finite number >= 0 (0: greedy)");
  }
  if (!(p.top_k >= 0)) return bad(SamplingField::kTopK, "an integer >= 0 (0: off)");
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    return bad(SamplingField::kTopP, "a number in (0, 1] (1: off)");
  }
  if (!(p.min_p >= 0.0f && p.min_p <= 1.0f)) {
    return bad(SamplingField::kMinP, "a number in [0, 1] (0: off)");
  }
  if (!(std::isfinite(p.repetition_penalty) && p.repetition_penalty > 0.0f)) {
    return bad(SamplingField::kRepetitionPenalty, "a finite number > 0 (1: off)");
  }
  if (rule != nullptr) *rule = "";
  return SamplingField::kNone;
}

std::string SamplingParamsError(const SamplingParams& p) {
  const char* rule = "";
  const char* name = "";
  double value = 0;
  switch (InvalidSamplingField(p, &rule)) {
    case SamplingField::kNone:
      return "";
    case SamplingField::kTemperature:
      name = "temperature", value = p.temperature;
      break;
    case SamplingField::kTopK:
      name = "top_k", value = p.top_k;
      break;
    case SamplingField::kTopP:
      name = "top_p", value = p.top_p;
      break;
    case SamplingField::kMinP:
      name = "min_p", value = p.min_p;
      break;
    case SamplingField::kRepetitionPenalty:
      name = "repetition_penalty", value = p.repetition_penalty;
      break;
  }
  char text[160];
  std::snprintf(text, sizeof(text), "\"%s\" = %g: expected %s", name, value, rule);
  return text;
}

double SampleUniform(uint64_t* state) {
  return static_cast<double>(SplitMix64(state) >> 11) * 0x1p-53;
}

int32_t ArgmaxRef(const float* logits, int64_t n) {
  DF11_CHECK(n >= 1 && logits != nullptr);
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(logits[i])) continue;
    if (best < 0 || logits[i] > logits[best]) best = i;
  }
  return static_cast<int32_t>(best < 0 ? 0 : best);
}

int32_t SampleRef(const float* logits, int64_t vocab, const SamplingParams& p,
                  const int32_t* history, int64_t n_history, uint64_t* rng_state) {
  DF11_CHECK(vocab >= 1 && vocab <= INT32_MAX && logits != nullptr);
  DF11_CHECK(InvalidSamplingField(p, nullptr) == SamplingField::kNone);
  DF11_CHECK(n_history >= 0 && (n_history == 0 || history != nullptr));
  std::vector<float> scores(logits, logits + vocab);
  if (p.repetition_penalty != 1.0f) {
    ApplyRepetitionPenalty(p.repetition_penalty, history, n_history, vocab, &scores);
  }
  if (p.temperature == 0.0f) return ArgmaxRef(scores.data(), vocab);
  DF11_CHECK(rng_state != nullptr);
  for (float& s : scores) s /= p.temperature;

  const int32_t best = ArgmaxRef(scores.data(), vocab);
  // No finite maximum (all -inf, or +inf present): the distribution is degenerate.
  if (!std::isfinite(scores[best])) return best;
  std::vector<int32_t> kept;
  kept.reserve(static_cast<size_t>(vocab));
  for (int64_t i = 0; i < vocab; ++i) {
    if (!std::isnan(scores[i])) kept.push_back(static_cast<int32_t>(i));
  }
  TopK(p.top_k, scores, &kept);
  TopP(p.top_p, scores, &kept);
  MinP(p.min_p, best, scores, &kept);
  if (p.top_p < 1.0f) std::sort(kept.begin(), kept.end());  // back to id order

  const double max_score = scores[best];  // best survives every filter (lowest id on ties)
  double total = 0.0;
  for (int32_t id : kept) total += std::exp(static_cast<double>(scores[id]) - max_score);
  const double target = SampleUniform(rng_state) * total;
  double cumulative = 0.0;
  for (int32_t id : kept) {
    cumulative += std::exp(static_cast<double>(scores[id]) - max_score);
    if (cumulative > target) return id;
  }
  return kept.back();  // not reached: the running sum ends at `total`, which exceeds target
}

}  // namespace df11
