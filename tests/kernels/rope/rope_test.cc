// SPDX-License-Identifier: Apache-2.0
// RoPE: inverse frequencies against hand-evaluated transformers formulas (default, Llama 3.1's
// llama3 scaling, linear) and against transformers 5.24's yarn numbers (two configs: defaults;
// beta_fast/beta_slow/mscale/mscale_all_dim/truncate set), the attention scaling of cos and sin,
// the rotate_half pairing, position 0 as the identity, and the rotation against double math on
// HF's float32 angles.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "kernels/rope/rope.h"
#include "tests/kernels/kernel_test_util.h"

namespace df11 {
namespace {

// Inverse frequencies are rounded once from double: within half an FP32 ulp (6e-8 relative).
constexpr double kFreqRtol = 1e-7;

void ExpectFreq(const std::vector<float>& inv_freq, int i, double expected) {
  EXPECT_LE(std::abs(inv_freq[i] - expected), kFreqRtol * expected)
      << "inv_freq[" << i << "] expected " << expected << " actual " << inv_freq[i];
}

RopeParams Llama31_8B() {
  RopeParams p;
  p.head_dim = 128;
  p.theta = 500000.0;
  p.scaling_type = "llama3";
  p.factor = 8.0;
  p.low_freq_factor = 1.0;
  p.high_freq_factor = 4.0;
  p.original_max_position_embeddings = 8192;
  return p;
}

TEST(RopeInvFreq, Default) {
  RopeParams p;
  p.head_dim = 128;
  p.theta = 10000.0;
  auto inv_freq = RopeInvFreq(p);
  ASSERT_EQ(inv_freq.size(), 64u);
  ExpectFreq(inv_freq, 0, 1.0);
  ExpectFreq(inv_freq, 1, 8.659643234e-01);   // 10000^(-2/128)
  ExpectFreq(inv_freq, 63, 1.154781985e-04);  // 10000^(-126/128)
}

TEST(RopeInvFreq, Llama3ScalingOfLlama31_8B) {
  auto inv_freq = RopeInvFreq(Llama31_8B());
  ASSERT_EQ(inv_freq.size(), 64u);
  // Wavelengths 2π / f: below 8192 / 4 = 2048 unchanged, above 8192 / 1 divided by 8, in
  // between interpolated with smooth = (8192 / wavelen - 1) / (4 - 1).
  auto base = [](int i) { return std::pow(500000.0, -2.0 * i / 128.0); };
  ExpectFreq(inv_freq, 0, 1.0);
  ExpectFreq(inv_freq, 10, base(10));         // wavelen 48.8: high frequency
  ExpectFreq(inv_freq, 28, base(28));         // wavelen 1956.5: still high
  ExpectFreq(inv_freq, 35, base(35) / 8.0);   // wavelen 8218.7: low frequency
  ExpectFreq(inv_freq, 63, base(63) / 8.0);
  for (int i : {29, 30, 34}) {                // wavelen 2401.7, 2948.3, 6695.1: medium
    const double wavelen = 2.0 * std::numbers::pi / base(i);
    const double smooth = (8192.0 / wavelen - 1.0) / 3.0;
    ExpectFreq(inv_freq, i, (1.0 - smooth) * base(i) / 8.0 + smooth * base(i));
  }
  // The same entries as literals (Python, float64).
  ExpectFreq(inv_freq, 10, 1.286873734e-01);
  ExpectFreq(inv_freq, 29, 2.166570764e-03);
  ExpectFreq(inv_freq, 30, 1.371893568e-03);
  ExpectFreq(inv_freq, 34, 1.785078128e-04);
  ExpectFreq(inv_freq, 63, 3.068925989e-07);
}

TEST(RopeInvFreq, LinearDividesByFactor) {
  RopeParams p;
  p.head_dim = 64;
  p.theta = 1000000.0;
  auto plain = RopeInvFreq(p);
  p.scaling_type = "linear";
  p.factor = 4.0;
  auto scaled = RopeInvFreq(p);
  for (int i = 0; i < 32; ++i) ExpectFreq(scaled, i, std::pow(1e6, -2.0 * i / 64.0) / 4.0);
  ExpectFreq(scaled, 7, plain[7] / 4.0);
}

// transformers 5.24's _compute_yarn_parameters(Qwen3Config(head_dim=32, rope_parameters=...)),
// printed in float32 (torch computes in float32: our double-then-round values are within a few
// ulps).
constexpr double kYarnRtol = 1e-6;

TEST(RopeInvFreq, YarnMatchesTransformers) {
  RopeParams p;
  p.head_dim = 32;
  p.theta = 1e6;
  p.scaling_type = "yarn";
  p.factor = 4.0;
  p.original_max_position_embeddings = 32768;
  const double expected[] = {1.0,
                             0.4216965138912201,
                             0.17782793939113617,
                             0.07498941570520401,
                             0.03162277862429619,
                             0.01333521492779255,
                             0.00477990135550499,
                             0.001659961650148034,
                             0.0005499999970197678,
                             0.00016867858357727528,
                             4.4456985051510856e-05,
                             1.8747356079984456e-05,
                             7.905693564680405e-06,
                             3.3338035336782923e-06,
                             1.405853367941745e-06,
                             5.928434347879374e-07};
  std::vector<float> inv_freq = RopeInvFreq(p);
  ASSERT_EQ(inv_freq.size(), 16u);
  for (int i = 0; i < 16; ++i) {
    EXPECT_LE(std::abs(inv_freq[i] - expected[i]), kYarnRtol * expected[i])
        << "inv_freq[" << i << "]";
  }
  EXPECT_NEAR(RopeAttentionScaling(p), 1.138629436111989, 1e-7);  // 0.1 ln(4) + 1

  // The optional keys: beta_fast, beta_slow, mscale / mscale_all_dim, truncate.
  p.theta = 10000.0;
  p.factor = 8.0;
  p.original_max_position_embeddings = 4096;
  p.beta_fast = 16;
  p.beta_slow = 2;
  p.mscale = 0.707;
  p.mscale_all_dim = 1.0;
  p.truncate = false;
  const double expected2[] = {1.0,
                              0.5623413324356079,
                              0.3162277638912201,
                              0.17782793939113617,
                              0.10000000149011612,
                              0.05623412877321243,
                              0.03162277862429619,
                              0.015371676534414291,
                              0.006221889052540064,
                              0.0021367003209888935,
                              0.00043557558092288673,
                              0.00022228492889553308,
                              0.0001250000059371814,
                              7.029266271274537e-05,
                              3.9528473280370235e-05,
                              2.2228492525755428e-05};
  inv_freq = RopeInvFreq(p);
  for (int i = 0; i < 16; ++i) {
    EXPECT_LE(std::abs(inv_freq[i] - expected2[i]), kYarnRtol * expected2[i])
        << "inv_freq[" << i << "]";
  }
  EXPECT_NEAR(RopeAttentionScaling(p), 0.9495608824621653, 1e-7);
  p.attention_factor = 1.25;  // given explicitly: used as it is
  EXPECT_FLOAT_EQ(RopeAttentionScaling(p), 1.25f);
  p.scaling_type = "llama3";  // only yarn scales cos and sin
  EXPECT_EQ(RopeAttentionScaling(p), 1.0f);
}

TEST(Rope, AttentionScalingMultipliesCosAndSin) {
  // Scaling by 2 (a power of two) is exact in FP32: the result is exactly twice the unscaled one.
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t tokens = 5, heads = 2, head_dim = 16;
  std::vector<float> x(tokens * heads * head_dim);
  for (auto& v : x) v = dist(rng);
  const std::vector<int32_t> positions = {0, 1, 7, 100, 5000};
  RopeParams p;
  p.head_dim = head_dim;
  const std::vector<float> inv_freq = RopeInvFreq(p);
  std::vector<float> plain = x, doubled = x;
  RopeRef(plain.data(), tokens, heads, head_dim, positions.data(), inv_freq.data(), 1.0f);
  RopeRef(doubled.data(), tokens, heads, head_dim, positions.data(), inv_freq.data(), 2.0f);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(doubled[i], 2.0f * plain[i]) << "element " << i;
}

TEST(Rope, PairsIWithIPlusHalf) {
  // A unit vector along element 0 rotates within (0, half): (cos θ0, sin θ0) at position p.
  const int64_t head_dim = 8, half = 4;
  const std::vector<float> inv_freq = {0.5f, 0.25f, 0.125f, 0.0625f};
  std::vector<float> x(head_dim, 0.0f);
  x[0] = 1.0f;
  const int32_t pos = 3;
  RopeRef(x.data(), 1, 1, head_dim, &pos, inv_freq.data(), 1.0f);
  EXPECT_NEAR(x[0], std::cos(1.5), 1e-7);
  EXPECT_NEAR(x[half], std::sin(1.5), 1e-7);
  for (int64_t i : {1, 2, 3, 5, 6, 7}) EXPECT_EQ(x[i], 0.0f) << "element " << i;
}

TEST(Rope, MatchesDoubleMathOnFloatAngles) {
  const int64_t tokens = 9, heads = 3;
  auto inv_freq = RopeInvFreq(Llama31_8B());
  const int64_t head_dim = 128, half = 64;
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(tokens * heads * head_dim);
  for (auto& v : x) v = dist(rng);
  std::vector<int32_t> positions(tokens);
  positions[0] = 0;
  for (int64_t t = 1; t < tokens; ++t) positions[t] = static_cast<int32_t>(rng() % 131072);
  std::vector<float> y = x;
  RopeRef(y.data(), tokens, heads, head_dim, positions.data(), inv_freq.data(), 1.0f);

  // Position 0 (token 0) is the identity, bit for bit.
  EXPECT_EQ(std::memcmp(x.data(), y.data(), heads * head_dim * sizeof(float)), 0);
  // HF's angle is float32(pos) * inv_freq rounded to float32 (at position 1e5 that rounding
  // alone moves the angle by ~4e-3, so the reference uses the same float angle); after that
  // FP32 products and cos/sin: |err| <= 1e-6 + 1e-5 |ref| for O(1) inputs.
  int shown = 0;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* xh = x.data() + (t * heads + h) * head_dim;
      const float* yh = y.data() + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < head_dim; ++i) {
        const int64_t f = i % half;
        const double angle = static_cast<float>(positions[t]) * inv_freq[f];
        const double c = std::cos(angle), s = std::sin(angle);
        const double expected = i < half ? xh[i] * c - double{xh[i + half]} * s
                                         : xh[i] * c + double{xh[i - half]} * s;
        if (std::abs(yh[i] - expected) > 1e-6 + 1e-5 * std::abs(expected) && shown++ < 8) {
          ADD_FAILURE() << "token " << t << " head " << h << " element " << i << ": expected "
                        << expected << " actual " << yh[i];
        }
      }
    }
  }
}

}  // namespace
}  // namespace df11
