// SPDX-License-Identifier: Apache-2.0
// SampleRef / ArgmaxRef: greedy ties, the repetition penalty's HF math, top-k = 1 as greedy,
// draw frequencies against softmax(logits / T), top-k/top-p/min-p exclusions, and per-request
// reproducibility (same seed, same tokens, whatever else is sampled in between); the params
// InvalidSamplingField accepts are exactly those SampleRef serves (edge values, NaN, infinities).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/sampling/sampling.h"
#include "tests/kernels/kernel_test_util.h"

namespace df11 {
namespace {

int32_t Sample(const std::vector<float>& logits, const SamplingParams& p,
               const std::vector<int32_t>& history, uint64_t* rng_state) {
  return SampleRef(logits.data(), static_cast<int64_t>(logits.size()), p, history.data(),
                   static_cast<int64_t>(history.size()), rng_state);
}

// Token frequencies over `draws` samples.
std::vector<double> Frequencies(const std::vector<float>& logits, const SamplingParams& p,
                                int draws, uint64_t seed) {
  std::vector<double> freq(logits.size(), 0.0);
  uint64_t state = seed;
  for (int i = 0; i < draws; ++i) freq[Sample(logits, p, {}, &state)] += 1.0 / draws;
  return freq;
}

// Logits whose softmax is exactly `probs` (up to a constant).
std::vector<float> LogitsOf(const std::vector<double>& probs) {
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));
  return logits;
}

// |freq - p| <= 5 standard errors (+1e-4): fails by chance with probability ~1e-6 per token.
void ExpectFrequencies(const std::vector<double>& freq, const std::vector<double>& probs,
                       int draws) {
  for (size_t i = 0; i < probs.size(); ++i) {
    const double tol = 5.0 * std::sqrt(probs[i] * (1.0 - probs[i]) / draws) + 1e-4;
    EXPECT_NEAR(freq[i], probs[i], tol) << "token " << i;
  }
}

TEST(Argmax, LowestIndexOnTiesAndNanSkipped) {
  const float nan = std::nanf("");
  std::vector<float> logits = {nan, 1.0f, 5.0f, -2.0f, 5.0f, 4.0f};
  EXPECT_EQ(ArgmaxRef(logits.data(), 6), 2);
  std::vector<float> all_nan = {nan, nan};
  EXPECT_EQ(ArgmaxRef(all_nan.data(), 2), 0);
}

TEST(Sample, GreedyTakesLowestIndexOnTiesAndDrawsNothing) {
  std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f};
  uint64_t state = 42;
  EXPECT_EQ(Sample(logits, SamplingParams{}, {}, &state), 1);
  EXPECT_EQ(state, 42u);
}

TEST(Sample, RepetitionPenaltyDividesPositiveMultipliesNegativeOncePerToken) {
  SamplingParams greedy;
  greedy.repetition_penalty = 1.4f;
  // Positive: 3 / 1.4 = 2.14 > 2 keeps token 0, even though it was seen three times
  // (applied per occurrence it would be 3 / 1.4³ = 1.09).
  EXPECT_EQ(Sample({3.0f, 2.0f}, greedy, {0, 0, 0}, nullptr), 0);
  greedy.repetition_penalty = 2.0f;
  EXPECT_EQ(Sample({3.0f, 2.0f}, greedy, {0}, nullptr), 1);  // 3 / 2 = 1.5 < 2
  // Negative: -1 * 2 = -2 < -1.5 (dividing would have given -0.5 and kept token 0).
  EXPECT_EQ(Sample({-1.0f, -1.5f}, greedy, {0}, nullptr), 1);
  // Unseen tokens are untouched: token 1 is seen, 0 is not.
  EXPECT_EQ(Sample({1.0f, 1.9f}, greedy, {1, 1}, nullptr), 0);  // 1.9 / 2 = 0.95 < 1

  // The penalty comes before top-k: [3, 2, 1] → [0.75, 2, 1], so top-1 always picks token 1.
  SamplingParams sample;
  sample.temperature = 1.0f;
  sample.top_k = 1;
  sample.repetition_penalty = 4.0f;
  uint64_t state = FreshSeed();
  for (int i = 0; i < 100; ++i) EXPECT_EQ(Sample({3.0f, 2.0f, 1.0f}, sample, {0}, &state), 1);
}

TEST(Sample, TopKOneIsGreedy) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  SamplingParams p;
  p.temperature = 1.3f;
  p.top_k = 1;
  uint64_t state = seed;
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> logits(1000);
    for (auto& v : logits) v = dist(rng);
    EXPECT_EQ(Sample(logits, p, {}, &state), ArgmaxRef(logits.data(), 1000));
  }
}

TEST(Sample, FrequenciesFollowTheTemperedSoftmax) {
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, -3.0f};
  const int draws = 200'000;
  for (float temperature : {0.7f, 1.0f, 1.8f}) {
    uint64_t seed = FreshSeed();
    SCOPED_TRACE("temperature " + std::to_string(temperature) + " seed " + std::to_string(seed));
    std::vector<double> probs;
    double z = 0;
    for (float l : logits) z += std::exp(l / temperature);
    for (float l : logits) probs.push_back(std::exp(l / temperature) / z);
    SamplingParams p;
    p.temperature = temperature;
    ExpectFrequencies(Frequencies(logits, p, draws, seed), probs, draws);
  }
}

TEST(Sample, TopKTopPAndMinPExcludeTokens) {
  const std::vector<float> logits = LogitsOf({0.1, 0.5, 0.15, 0.25});
  const int draws = 50'000;
  const std::vector<double> top_two = {0.0, 2.0 / 3.0, 0.0, 1.0 / 3.0};
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 2;  // keeps 0.5 and 0.25
  ExpectFrequencies(Frequencies(logits, p, draws, seed), top_two, draws);
  p.top_k = 0;
  // Ascending cumulative 0.1, 0.25, 0.5, 1.0: those <= 1 - 0.7 = 0.3 go (0.1 and 0.15).
  p.top_p = 0.7f;
  ExpectFrequencies(Frequencies(logits, p, draws, seed + 1), top_two, draws);
  p.top_p = 0.8f;  // 0.25 > 0.2: only 0.1 goes
  ExpectFrequencies(Frequencies(logits, p, draws, seed + 2), {0.0, 0.5 / 0.9, 0.15 / 0.9, 0.25 / 0.9},
                    draws);
  p.top_p = 1.0f;
  p.min_p = 0.35f;  // threshold 0.35 * 0.5 = 0.175: 0.1 and 0.15 go
  ExpectFrequencies(Frequencies(logits, p, draws, seed + 3), top_two, draws);
}

TEST(Sample, SameSeedSameTokensWhateverElseIsSampled) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> logits(500);
  for (auto& v : logits) v = dist(rng);
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_k = 100;
  p.top_p = 0.95f;
  p.min_p = 0.01f;
  p.repetition_penalty = 1.1f;

  auto generate = [&](uint64_t request_seed, bool interleave_other_request) {
    std::vector<int32_t> tokens;
    uint64_t state = request_seed, other_state = request_seed ^ 0x5555;
    for (int i = 0; i < 200; ++i) {
      if (interleave_other_request) Sample(logits, p, {}, &other_state);
      tokens.push_back(Sample(logits, p, tokens, &state));
    }
    return tokens;
  };
  const std::vector<int32_t> alone = generate(seed, false);
  EXPECT_EQ(generate(seed, false), alone);
  EXPECT_EQ(generate(seed, true), alone);
  EXPECT_NE(generate(seed + 1, false), alone);
}

// Every combination of edge values: accepted params give a token in range (sampled and greedy),
// refused ones abort SampleRef (its precondition), so a request checked with
// InvalidSamplingField never takes a process down.
TEST(SampleDeathTest, ValidParamsAreExactlyWhatSampleRefServes) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::nanf("");
  const float denormal = std::numeric_limits<float>::denorm_min();
  const std::vector<float> logits = {1.5f, -2.0f, 0.25f, 3.0f, -0.5f};
  const std::vector<int32_t> history = {3, 0, 3};
  int accepted = 0, refused = 0;
  for (float temperature : {0.0f, denormal, 0.7f, 1e30f, -1.0f, inf, nan}) {
    for (float top_p : {1.0f, denormal, 0.5f, 0.0f, 1.5f, nan}) {
      for (float penalty : {1.0f, denormal, 1.3f, 1e30f, 0.0f, -1.0f, inf, nan}) {
        for (float min_p : {0.0f, 1.0f, -0.1f, nan}) {
          for (int top_k : {0, 1, 1 << 30, -1}) {
            SamplingParams p;
            p.temperature = temperature;
            p.top_p = top_p;
            p.repetition_penalty = penalty;
            p.min_p = min_p;
            p.top_k = top_k;
            const std::string what = SamplingParamsError(p);
            uint64_t rng = 7;
            if (InvalidSamplingField(p, nullptr) == SamplingField::kNone) {
              ++accepted;
              EXPECT_EQ(what, "");
              const int32_t token = Sample(logits, p, history, &rng);
              EXPECT_GE(token, 0);
              EXPECT_LT(token, 5);
            } else if (refused++ % 97 == 0) {  // a sample: each death test forks
              EXPECT_NE(what, "");
              EXPECT_DEATH(Sample(logits, p, history, &rng), "InvalidSamplingField");
            }
          }
        }
      }
    }
  }
  EXPECT_EQ(accepted, 4 * 3 * 4 * 2 * 3);
}

TEST(Sample, InvalidParamsAreNamedWithTheirRule) {
  SamplingParams p;
  p.top_p = 0;
  EXPECT_EQ(SamplingParamsError(p), "\"top_p\" = 0: expected a number in (0, 1] (1: off)");
  p = {};
  p.temperature = std::nanf("");
  EXPECT_EQ(SamplingParamsError(p), "\"temperature\" = nan: expected a finite number >= 0 (0: greedy)");
  p = {};
  p.top_k = -1;
  EXPECT_EQ(SamplingParamsError(p), "\"top_k\" = -1: expected an integer >= 0 (0: off)");
  p = {};
  p.repetition_penalty = std::numeric_limits<float>::infinity();
  EXPECT_EQ(SamplingParamsError(p),
            "\"repetition_penalty\" = inf: expected a finite number > 0 (1: off)");
  p = {};
  p.min_p = 2;
  EXPECT_EQ(SamplingParamsError(p), "\"min_p\" = 2: expected a number in [0, 1] (0: off)");
}

}  // namespace
}  // namespace df11
