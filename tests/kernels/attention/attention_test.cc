// SPDX-License-Identifier: Apache-2.0
// AttentionRef against a double-precision causal softmax(q·kᵀ/√d)·v (with and without a sliding
// window, with Gemma's query_pre_attn_scalar scale and score soft cap), a hand-computed single
// query, causal masking (future cache entries change nothing), the sliding window (entries older
// than the window change nothing; transformers' rule kv > q - w), the GQA head → kv-head mapping, bit-identical results for any thread count, and AttentionCpu (a whole step's
// sequences) giving AttentionRef's bits at every CPU level.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/attention.h"
#include "kernels/common/cpu_features.h"
#include "tests/kernels/kernel_test_util.h"

namespace df11 {
namespace {

struct Shape {
  int64_t t_new, t_total, n_heads, n_kv_heads, head_dim;
  int64_t window = 0;  // 0: none
  float scale = 0;     // 0: head_dim^-0.5
  float softcap = 0;   // 0: none
};

AttentionParams ParamsOf(const Shape& s) {
  return {s.window, s.scale > 0 ? s.scale : AttentionScale(s.head_dim), s.softcap};
}

struct Inputs {
  std::vector<float> q, k, v;  // (t_new, n_heads, d), (t_total, n_kv_heads, d) twice
};

Inputs RandomInputs(const Shape& s, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Inputs in{std::vector<float>(s.t_new * s.n_heads * s.head_dim),
            std::vector<float>(s.t_total * s.n_kv_heads * s.head_dim),
            std::vector<float>(s.t_total * s.n_kv_heads * s.head_dim)};
  for (auto* buf : {&in.q, &in.k, &in.v}) {
    for (auto& x : *buf) x = dist(rng);
  }
  return in;
}

// The positions before the step in a flat cache, the step's own as its new rows.
std::vector<float> Attend(const Shape& s, const Inputs& in, int threads) {
  std::vector<float> out(s.t_new * s.n_heads * s.head_dim, std::numeric_limits<float>::quiet_NaN());
  const int64_t past = s.t_total - s.t_new, row = s.n_kv_heads * s.head_dim;
  const KvSource kv{in.k.data(), in.v.data(), past, in.k.data() + past * row,
                    in.v.data() + past * row};
  AttentionRef(in.q.data(), kv, s.t_new, s.n_heads, s.n_kv_heads, s.head_dim, ParamsOf(s),
               out.data(), threads);
  return out;
}

std::vector<double> Reference(const Shape& s, const Inputs& in) {
  const int64_t d = s.head_dim, group = s.n_heads / s.n_kv_heads;
  std::vector<double> out(s.t_new * s.n_heads * d, 0.0);
  for (int64_t i = 0; i < s.t_new; ++i) {
    const int64_t q_pos = s.t_total - s.t_new + i;
    for (int64_t h = 0; h < s.n_heads; ++h) {
      const int64_t kv = h / group;
      std::vector<double> w(q_pos + 1, -INFINITY);  // masked positions keep weight exp(-inf) = 0
      double max_w = -INFINITY, sum = 0;
      for (int64_t j = 0; j <= q_pos; ++j) {
        if (s.window > 0 && !(j > q_pos - s.window)) continue;  // transformers' sliding mask
        double dot = 0;
        for (int64_t e = 0; e < d; ++e) {
          dot += double{in.q[(i * s.n_heads + h) * d + e]} * in.k[(j * s.n_kv_heads + kv) * d + e];
        }
        w[j] = s.scale > 0 ? dot * s.scale : dot / std::sqrt(static_cast<double>(d));
        if (s.softcap > 0) w[j] = s.softcap * std::tanh(w[j] / s.softcap);
        max_w = std::max(max_w, w[j]);
      }
      for (auto& x : w) sum += (x = std::exp(x - max_w));
      for (int64_t j = 0; j <= q_pos; ++j) {
        for (int64_t e = 0; e < d; ++e) {
          out[(i * s.n_heads + h) * d + e] += w[j] / sum * in.v[(j * s.n_kv_heads + kv) * d + e];
        }
      }
    }
  }
  return out;
}

// N(0, 1) inputs: scores ~N(0, 1), outputs are convex combinations of O(1) values.
constexpr double kAtol = 1e-5;
constexpr double kRtol = 1e-4;

TEST(Attention, MatchesDoubleReference) {
  const Shape shapes[] = {{1, 1, 4, 4, 64},      {1, 37, 8, 2, 128},    {5, 5, 4, 1, 64},
                          {3, 20, 6, 3, 16},     {7, 300, 2, 1, 3},     {16, 16, 32, 8, 128},
                          {16, 16, 4, 2, 32, 4}, {1, 37, 8, 2, 64, 10}, {7, 300, 2, 1, 8, 32},
                          {5, 5, 2, 2, 16, 1},   {3, 20, 6, 3, 16, 100},
                          // Gemma 3: query_pre_attn_scalar 168 on head_dim 128, a soft cap of 2
                          // on scores up to ~4, both with a window.
                          {9, 40, 4, 2, 128, 0, 0.0771517f, 0.0f},
                          {9, 40, 4, 2, 16, 8, 0.0771517f, 2.0f},
                          {3, 20, 6, 3, 16, 0, 0.0f, 1.5f}};
  for (const Shape& s : shapes) {
    uint64_t seed = FreshSeed();
    SCOPED_TRACE("t_new " + std::to_string(s.t_new) + " t_total " + std::to_string(s.t_total) +
                 " heads " + std::to_string(s.n_heads) + "/" + std::to_string(s.n_kv_heads) +
                 " head_dim " + std::to_string(s.head_dim) + " window " + std::to_string(s.window) +
                 " scale " + std::to_string(s.scale) + " softcap " + std::to_string(s.softcap) +
                 " seed " + std::to_string(seed));
    Inputs in = RandomInputs(s, seed);
    EXPECT_EQ(CompareClose(Reference(s, in), Attend(s, in, 2), kAtol, kRtol), "");
  }
}

TEST(Attention, SingleQueryIsTheSoftmaxWeightedMean) {
  // One head, head_dim 2, query at position 2 over three cached keys.
  const Shape s{1, 3, 1, 1, 2};
  Inputs in{{1.0f, 2.0f},                          // q
            {1.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f},  // k: scores q·k = 1, 2, 3
            {10.0f, -1.0f, 20.0f, -2.0f, 30.0f, -3.0f}};
  // weights ∝ exp(score / √2)
  const double e1 = std::exp(1 / std::sqrt(2.0)), e2 = std::exp(2 / std::sqrt(2.0)),
               e3 = std::exp(3 / std::sqrt(2.0)), z = e1 + e2 + e3;
  const std::vector<double> expected = {(10 * e1 + 20 * e2 + 30 * e3) / z,
                                        (-1 * e1 - 2 * e2 - 3 * e3) / z};
  EXPECT_EQ(CompareClose(expected, Attend(s, in, 1), kAtol, kRtol), "");
  // A single cached position: the output is its value row exactly.
  const Shape one{1, 1, 1, 1, 2};
  Inputs single{{0.3f, -7.0f}, {2.0f, 5.0f}, {4.5f, -0.25f}};
  EXPECT_EQ(Attend(one, single, 1), (std::vector<float>{4.5f, -0.25f}));
}

TEST(Attention, CausalMaskIgnoresLaterPositions) {
  const Shape s{6, 6, 4, 2, 32};  // prefill: query i at position i
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Inputs in = RandomInputs(s, seed);
  std::vector<float> before = Attend(s, in, 1);
  const int64_t row = s.n_kv_heads * s.head_dim;
  for (int64_t j = 4 * row; j < 6 * row; ++j) {  // change positions 4 and 5
    in.k[j] += 1.0f;
    in.v[j] -= 3.0f;
  }
  std::vector<float> after = Attend(s, in, 1);
  const int64_t q_row = s.n_heads * s.head_dim;
  EXPECT_EQ(std::memcmp(before.data(), after.data(), 4 * q_row * sizeof(float)), 0)
      << "queries 0-3 saw positions 4-5";
  EXPECT_NE(std::memcmp(before.data() + 4 * q_row, after.data() + 4 * q_row, q_row * sizeof(float)),
            0)
      << "query 4 did not see position 4";
}

TEST(Attention, SlidingWindowSeesOnlyTheLastWindowPositions) {
  // Window 3, prefill of 8: query i sees positions i-2..i. Changing position 2 changes queries
  // 2, 3 and 4 only; without a window every later query sees it.
  Shape s{8, 8, 2, 1, 16, 3};
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Inputs in = RandomInputs(s, seed);
  const std::vector<float> before = Attend(s, in, 1);
  const int64_t row = s.n_kv_heads * s.head_dim, q_row = s.n_heads * s.head_dim;
  for (int64_t j = 2 * row; j < 3 * row; ++j) in.k[j] += 1.0f;
  const std::vector<float> after = Attend(s, in, 1);
  for (int64_t i = 0; i < s.t_new; ++i) {
    const bool same = std::memcmp(before.data() + i * q_row, after.data() + i * q_row,
                                  q_row * sizeof(float)) == 0;
    EXPECT_EQ(same, i < 2 || i > 4) << "query " << i;
  }
  // Window 1: each query attends to itself only, so the output is its own value row.
  s.window = 1;
  const std::vector<float> own = Attend(s, in, 1);
  for (int64_t i = 0; i < s.t_new; ++i) {
    for (int64_t h = 0; h < s.n_heads; ++h) {
      EXPECT_EQ(std::memcmp(own.data() + i * q_row + h * s.head_dim, in.v.data() + i * row,
                            s.head_dim * sizeof(float)),
                0)
          << "query " << i << " head " << h;
    }
  }
  // A window at least as long as the sequence changes nothing.
  s.window = 8;
  const std::vector<float> wide = Attend(s, in, 1);
  s.window = 0;
  EXPECT_EQ(wide, Attend(s, in, 1));
}

TEST(Attention, GroupedHeadsReadTheirKvHead) {
  // 6 query heads over 2 kv heads: heads 0-2 read kv head 0, heads 3-5 kv head 1. The same
  // cache with each kv head repeated per query head (plain multi-head) gives identical bits.
  const Shape gqa{3, 10, 6, 2, 16};
  const Shape mha{3, 10, 6, 6, 16};
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Inputs in = RandomInputs(gqa, seed);
  Inputs expanded{in.q, std::vector<float>(10 * 6 * 16), std::vector<float>(10 * 6 * 16)};
  for (int64_t t = 0; t < 10; ++t) {
    for (int64_t h = 0; h < 6; ++h) {
      for (int64_t e = 0; e < 16; ++e) {
        expanded.k[(t * 6 + h) * 16 + e] = in.k[(t * 2 + h / 3) * 16 + e];
        expanded.v[(t * 6 + h) * 16 + e] = in.v[(t * 2 + h / 3) * 16 + e];
      }
    }
  }
  EXPECT_EQ(Attend(gqa, in, 2), Attend(mha, expanded, 2));
}

TEST(Attention, SoftcapBoundsTheScores) {
  // Scores of 40 and 0 capped at 1: weights exp(tanh(40)) and exp(0), not e^40 : 1.
  const Shape s{1, 2, 1, 1, 1, 0, 1.0f, 1.0f};
  Inputs in{{1.0f}, {40.0f, 0.0f}, {1.0f, 0.0f}};
  const double e = std::exp(std::tanh(40.0));
  EXPECT_EQ(CompareClose({e / (e + 1.0)}, Attend(s, in, 1), kAtol, kRtol), "");
}

TEST(Attention, BitIdenticalForAnyThreadCount) {
  const Shape s{4, 50, 8, 2, 64};
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Inputs in = RandomInputs(s, seed);
  std::vector<float> one = Attend(s, in, 1);
  for (int threads : {2, 3, 8}) {
    std::vector<float> many = Attend(s, in, threads);
    EXPECT_EQ(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)), 0)
        << "threads " << threads;
  }
}

// A step of several sequences (decode, prefill, a chunk of a longer prompt, one with no new
// tokens) through AttentionCpu at every CPU level this machine has and any thread count gives
// each sequence's AttentionRef bits.
TEST(AttentionCpu, EveryLevelAndThreadCountGivesTheReferenceBits) {
  struct Seq { int64_t t_new, t_total; };
  const Seq seqs[] = {{1, 1}, {1, 77}, {40, 40}, {17, 300}, {0, 5}, {3, 3}};
  struct Config {
    int64_t n_heads, n_kv_heads, head_dim, window;
    float scale = 0, softcap = 0;
  };
  const Config configs[] = {{8, 2, 64, 0}, {4, 4, 128, 0}, {6, 3, 20, 0}, {4, 1, 32, 16},
                            {2, 2, 3, 0},  {4, 2, 16, 8, 0.0771517f, 2.0f}};
  const CpuLevel saved = ActiveCpuLevel();
  for (const Config& c : configs) {
    const uint64_t seed = FreshSeed();
    std::vector<Inputs> inputs;
    std::vector<std::vector<float>> want;
    for (const Seq& q : seqs) {
      const Shape s{q.t_new,  q.t_total, c.n_heads, c.n_kv_heads,
                    c.head_dim, c.window,  c.scale,   c.softcap};
      inputs.push_back(RandomInputs(s, seed + inputs.size()));
      want.push_back(Attend(s, inputs.back(), 1));
    }
    for (int l = 0; l <= static_cast<int>(CpuLevel::kAvx512Bf16); ++l) {
      const CpuLevel level = static_cast<CpuLevel>(l);
      if (SetCpuLevel(level) != level) continue;
      for (int threads : {1, 2, 3, 8}) {
        SCOPED_TRACE(std::string("level ") + CpuLevelName(level) + " threads " +
                     std::to_string(threads) + " heads " + std::to_string(c.n_heads) + "/" +
                     std::to_string(c.n_kv_heads) + " head_dim " + std::to_string(c.head_dim) +
                     " window " + std::to_string(c.window) + " seed " + std::to_string(seed));
        std::vector<std::vector<float>> got;
        std::vector<AttentionSequence> step;
        for (size_t i = 0; i < std::size(seqs); ++i) {
          got.emplace_back(want[i].size(), std::numeric_limits<float>::quiet_NaN());
          const int64_t past = seqs[i].t_total - seqs[i].t_new, row = c.n_kv_heads * c.head_dim;
          const KvSource kv{inputs[i].k.data(), inputs[i].v.data(), past,
                            inputs[i].k.data() + past * row, inputs[i].v.data() + past * row};
          step.push_back({inputs[i].q.data(), kv, seqs[i].t_new, got.back().data()});
        }
        const Shape params{0, 0, c.n_heads, c.n_kv_heads, c.head_dim, c.window, c.scale, c.softcap};
        AttentionCpu(step, c.n_heads, c.n_kv_heads, c.head_dim, ParamsOf(params), threads);
        for (size_t i = 0; i < std::size(seqs); ++i) {
          EXPECT_EQ(std::memcmp(want[i].data(), got[i].data(), want[i].size() * sizeof(float)), 0)
              << "sequence " << i;
        }
      }
    }
  }
  SetCpuLevel(saved);
}

}  // namespace
}  // namespace df11
