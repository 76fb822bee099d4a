// SPDX-License-Identifier: Apache-2.0
// RoPE: inverse frequencies against hand-evaluated transformers formulas (default, Llama 3.1's
// llama3 scaling, linear), the rotate_half pairing, position 0 as the identity, and the rotation
// against double math on HF's float32 angles.
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

TEST(Rope, PairsIWithIPlusHalf) {
  // A unit vector along element 0 rotates within (0, half): (cos θ0, sin θ0) at position p.
  const int64_t head_dim = 8, half = 4;
  const std::vector<float> inv_freq = {0.5f, 0.25f, 0.125f, 0.0625f};
  std::vector<float> x(head_dim, 0.0f);
  x[0] = 1.0f;
  const int32_t pos = 3;
  RopeRef(x.data(), 1, 1, head_dim, &pos, inv_freq.data());
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
  RopeRef(y.data(), tokens, heads, head_dim, positions.data(), inv_freq.data());

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
