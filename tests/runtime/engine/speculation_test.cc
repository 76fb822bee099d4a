// SPDX-License-Identifier: Apache-2.0
// Speculative decoding without a model: prompt lookup drafts what followed the most recent
// earlier occurrence of the longest recurring tail, and nothing when no tail recurs; greedy
// verification takes the target's tokens up to the first disagreement; sampled verification
// leaves the target distribution unchanged (chi-square over many fixed seeds on a small
// vocabulary: the first token's distribution, the acceptance rate p(d), and the distribution
// after a rejection, p with d removed and renormalised) and draws exactly what decoding without
// drafts draws, so a seed gives the same tokens either way.
#include "runtime/engine/speculation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace df11 {
namespace {

TEST(PromptLookup, DraftsWhatFollowedTheMostRecentOccurrenceOfTheLongestTail) {
  // Tail "7 8 9" recurs at 1..3 (followed by 4 5 6); "8 9" also at 10..11 (followed by 1):
  // the longest tail wins.
  const std::vector<int32_t> h = {0, 7, 8, 9, 4, 5, 6, 2, 3, 1, 8, 9, 1, 7, 8, 9};
  EXPECT_EQ(PromptLookupDrafts(h, 3, 4), (std::vector<int32_t>{4, 5, 6, 2}));
  EXPECT_EQ(PromptLookupDrafts(h, 3, 2), (std::vector<int32_t>{4, 5}));
  // With n = 2 the most recent "8 9" (at 10) is taken.
  EXPECT_EQ(PromptLookupDrafts(h, 2, 4), (std::vector<int32_t>{1, 7, 8, 9}));
  EXPECT_EQ(PromptLookupDrafts(h, 2, 6), (std::vector<int32_t>{1, 7, 8, 9, 1, 7}));
  // An occurrence near the end: the pattern goes on repeating into the drafts.
  EXPECT_EQ(PromptLookupDrafts(std::vector<int32_t>{5, 6, 5, 6}, 2, 5),
            (std::vector<int32_t>{5, 6, 5, 6, 5}));
  EXPECT_EQ(PromptLookupDrafts(std::vector<int32_t>{1, 9, 9}, 3, 3),
            (std::vector<int32_t>{9, 9, 9}));
}

TEST(PromptLookup, NothingWhenNoTailRecurs) {
  EXPECT_TRUE(PromptLookupDrafts(std::vector<int32_t>{1, 2, 3, 4, 5}, 3, 4).empty());
  EXPECT_TRUE(PromptLookupDrafts(std::vector<int32_t>{9}, 3, 4).empty());
  EXPECT_TRUE(PromptLookupDrafts(std::vector<int32_t>(), 3, 4).empty());
  EXPECT_TRUE(PromptLookupDrafts(std::vector<int32_t>{1, 2, 1, 2}, 3, 0).empty());  // no room left
}

// Logits rows whose argmax is `argmax[j]`.
std::vector<float> Rows(const std::vector<int32_t>& argmax, int64_t vocab) {
  std::vector<float> l(argmax.size() * vocab, 0.0f);
  for (size_t j = 0; j < argmax.size(); ++j) l[j * vocab + argmax[j]] = 5.0f;
  return l;
}

TEST(VerifyDrafts, GreedyTakesTheTargetsTokensUpToTheFirstDisagreement) {
  const int64_t vocab = 10;
  const std::vector<int32_t> history = {1, 2};
  std::vector<int32_t> out;
  uint64_t rng = 0;
  // Target: 4 5 6 7; drafts 4 5 9: two accepted, then the target's 6.
  VerifyDrafts(Rows({4, 5, 6, 7}, vocab).data(), vocab, {}, history, std::vector<int32_t>{4, 5, 9},
               &rng, &out);
  EXPECT_EQ(out, (std::vector<int32_t>{4, 5, 6}));
  // All accepted: the drafts and the target's next token.
  out.clear();
  VerifyDrafts(Rows({4, 5, 6, 7}, vocab).data(), vocab, {}, history, std::vector<int32_t>{4, 5, 6},
               &rng, &out);
  EXPECT_EQ(out, (std::vector<int32_t>{4, 5, 6, 7}));
  // The first rejected: one token, the target's.
  out.clear();
  AcceptGreedyDrafts(std::vector<int32_t>{3, 5}, std::vector<int32_t>{4}, &out);
  EXPECT_EQ(out, (std::vector<int32_t>{3}));
  out.clear();
  AcceptGreedyDrafts(std::vector<int32_t>{4, 5}, std::vector<int32_t>{4}, &out);
  EXPECT_EQ(out, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(rng, 0u);  // greedy draws nothing
}

TEST(VerifyDrafts, TheRepetitionPenaltySeesTheDraftsBeforeEachRow) {
  // Row 1's logits favour 3 slightly over 4; with 3 among the drafts before it, a penalty of 2
  // makes 4 the greedy token there.
  const int64_t vocab = 6;
  std::vector<float> l(2 * vocab, 0.0f);
  l[3] = 5.0f;              // row 0: 3
  l[vocab + 3] = 2.0f;      // row 1: 3 (2.0) vs 4 (1.5) before the penalty
  l[vocab + 4] = 1.5f;
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  std::vector<int32_t> out;
  uint64_t rng = 0;
  VerifyDrafts(l.data(), vocab, p, std::vector<int32_t>{0}, std::vector<int32_t>{3}, &rng, &out);
  EXPECT_EQ(out, (std::vector<int32_t>{3, 4}));
}

// Pearson's chi-square statistic of `counts` against probabilities `p` (cells with p > 0).
double ChiSquare(const std::vector<int64_t>& counts, const std::vector<double>& p) {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  double chi = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (p[i] <= 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    const double e = p[i] * static_cast<double>(n);
    chi += (counts[i] - e) * (counts[i] - e) / e;
  }
  return chi;
}

TEST(VerifyDrafts, SamplingKeepsTheTargetDistribution) {
  const int64_t vocab = 6;
  const std::vector<float> logits = {1.0f, 0.2f, -0.5f, 1.6f, 0.0f, -1.0f};
  SamplingParams params;
  params.temperature = 0.8f;
  std::vector<double> p(vocab);
  double total = 0;
  for (int64_t i = 0; i < vocab; ++i) total += p[i] = std::exp(logits[i] / 0.8);
  for (double& x : p) x /= total;
  // Two rows, the second a point mass on token 2 (so an accepted draft is followed by 2).
  std::vector<float> rows(logits);
  for (int64_t i = 0; i < vocab; ++i) rows.push_back(i == 2 ? 50.0f : -50.0f);
  constexpr int kTrials = 40000;
  for (const int32_t draft : {0, 3, 5}) {
    std::vector<int64_t> first(vocab, 0), rejected(vocab, 0);
    int64_t accepted = 0;
    for (int t = 0; t < kTrials; ++t) {
      uint64_t rng = 1000003ull * static_cast<uint64_t>(t) + 17;
      std::vector<int32_t> out;
      VerifyDrafts(rows.data(), vocab, params, std::vector<int32_t>{1},
                   std::vector<int32_t>{draft}, &rng, &out);
      ++first[out[0]];
      if (out[0] == draft) {
        ASSERT_EQ(out, (std::vector<int32_t>{draft, 2}));
        ++accepted;
      } else {
        ASSERT_EQ(out.size(), 1u);
        ++rejected[out[0]];
      }
    }
    // df = 5 and 4; 0.1 % critical values 20.5 and 18.5 (fixed seeds: the test is exact).
    EXPECT_LT(ChiSquare(first, p), 20.5) << "draft " << draft;
    std::vector<double> without(p);
    without[draft] = 0;
    for (double& x : without) x /= 1 - p[draft];
    EXPECT_LT(ChiSquare(rejected, without), 18.5) << "draft " << draft;
    // The acceptance rate is p(d): within 4 standard deviations.
    const double sd = std::sqrt(p[draft] * (1 - p[draft]) / kTrials);
    EXPECT_NEAR(static_cast<double>(accepted) / kTrials, p[draft], 4 * sd) << "draft " << draft;
  }
}

TEST(VerifyDrafts, SamplingDrawsWhatDecodingWithoutDraftsDraws) {
  // Rows of random logits; the drafts are the tokens decoding one at a time would sample, then a
  // wrong one: verification gives those tokens, the target's own at the wrong draft, and leaves
  // the RNG where decoding one at a time leaves it.
  const int64_t vocab = 9, rows = 4;
  std::vector<float> l(rows * vocab);
  uint64_t fill = 5;
  for (float& x : l) x = static_cast<float>(SampleUniform(&fill) * 4 - 2);
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 6;
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    std::vector<int32_t> history = {3, 1}, one_at_a_time;
    uint64_t rng = seed;
    for (int64_t j = 0; j < rows; ++j) {
      one_at_a_time.push_back(SampleRef(l.data() + j * vocab, vocab, p, history.data(),
                                        static_cast<int64_t>(history.size()), &rng));
      history.push_back(one_at_a_time.back());
    }
    std::vector<int32_t> drafts(one_at_a_time.begin(), one_at_a_time.begin() + 2);
    drafts.push_back((one_at_a_time[2] + 1) % vocab);
    std::vector<int32_t> out;
    uint64_t spec_rng = seed;
    VerifyDrafts(l.data(), vocab, p, std::vector<int32_t>{3, 1}, drafts, &spec_rng, &out);
    EXPECT_EQ(out, std::vector<int32_t>(one_at_a_time.begin(), one_at_a_time.begin() + 3));
    uint64_t after_three = seed;
    for (int j = 0; j < 3; ++j) SampleUniform(&after_three);
    EXPECT_EQ(spec_rng, after_three) << "seed " << seed;
  }
}

}  // namespace
}  // namespace df11
