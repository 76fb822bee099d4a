// SPDX-License-Identifier: Apache-2.0
// ew4 encoder + decoder: bit-exact round trips (normal, skewed, wide-exponent, all-escape and
// special values, shapes around the 64-weight block), DF11 -> ew4 -> BF16, the window choice,
// sizes, and the validator refusing inconsistent fields.
#include <gtest/gtest.h>

#include <random>

#include "kernels/common/bf16.h"
#include "kernels/dfloat11/df11_layout.h"
#include "kernels/ew4/ew4_decode.h"
#include "tests/kernels/dfloat11/df11_test_util.h"
#include "tests/kernels/ew4/ew4_test_util.h"

namespace df11 {
namespace {

using testing::Ew4RoundTrip;
using testing::FreshSeed;
using testing::NormalBf16;

TEST(Ew4Codec, NormalDistributionsRoundTrip) {
  for (double sigma : {1e-4, 0.02, 1.0, 30.0}) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE("sigma " + std::to_string(sigma) + " seed " + std::to_string(seed));
    EXPECT_EQ(Ew4RoundTrip(NormalBf16(97 * 515, sigma, seed), 97, 515, 2), "");
  }
}

TEST(Ew4Codec, ShapesAroundTheBlockRoundTrip) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (int64_t cols : {1, 31, 32, 33, 63, 64, 65, 127, 128, 200}) {
    for (int64_t rows : {0, 1, 3, 70}) {
      SCOPED_TRACE(std::to_string(rows) + " x " + std::to_string(cols));
      EXPECT_EQ(Ew4RoundTrip(NormalBf16(rows * cols, 0.02, seed + cols), rows, cols, 2), "");
    }
  }
}

TEST(Ew4Codec, SkewedWideAndSpecialValuesRoundTrip) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Ew4Encoded e;
  EXPECT_EQ(Ew4RoundTrip(testing::SkewedBf16(300 * 256, seed), 300, 256, 2, &e), "");
  // The window covers the common exponents; only the rare tail escapes.
  EXPECT_GT(e.n_escapes(), 0);
  EXPECT_LT(e.n_escapes(), 300 * 256 / 100);
  // Every exponent, Inf and NaN patterns, zeros and subnormals: escapes carry what the window
  // does not cover.
  EXPECT_EQ(Ew4RoundTrip(testing::WideExponentBf16(40 * 1000, seed), 40, 1000, 2, &e), "");
  EXPECT_GT(e.n_escapes(), 40 * 1000 / 2);
  std::vector<uint16_t> special = {0x0000, 0x8000, 0x0001, 0x807F, 0x7F80, 0xFF80,
                                   0x7FC1, 0xFFFF, 0x7F7F, 0x0080, 0x3F80, 0xBF80};
  EXPECT_EQ(Ew4RoundTrip(special, 3, 4, 1), "");
}

TEST(Ew4Codec, AllEscapeMatrixRoundTrips) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  // N(0, 0.02) has exponents near 120; a window at 200 covers none of them.
  const auto words = NormalBf16(33 * 130, 0.02, seed);
  Ew4Encoded e;
  ASSERT_EQ(Ew4RoundTrip(words, 33, 130, 2, &e, /*window_start=*/200), "");
  EXPECT_EQ(e.n_escapes(), 33 * 130);
  EXPECT_EQ(e.window_start, 200);
}

TEST(Ew4Codec, Df11ToEw4ToBf16IsBitExact) {
  // What loading a DF11 model with --weight-codec ew4 does: decode the DF11 unit, encode ew4.
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const std::vector<std::vector<uint16_t>> sources = {
      NormalBf16(64 * 192, 0.02, seed), testing::SkewedBf16(64 * 192, seed),
      // DF11 codes exponents below 240 only.
      [&] {
        auto w = testing::WideExponentBf16(64 * 192, seed);
        for (auto& x : w) x = Df11Combine(((x >> 7) & 0xFF) % 240, x & 0xFF);
        return w;
      }()};
  for (const auto& words : sources) {
    Df11EncodedUnit unit;
    ASSERT_EQ(testing::RoundTrip(words, 2, &unit), "");
    std::vector<uint16_t> decoded;
    ASSERT_EQ(testing::DecodeAll(unit.View(), &decoded), "");
    EXPECT_EQ(Ew4RoundTrip(decoded, 64, 192, 2), "");
  }
}

TEST(Ew4Codec, WindowHoldsTheMostWeightsAndTheSizeFollows) {
  ExponentHistogram h{};
  h[10] = 5;
  for (int e = 100; e < 130; ++e) h[e] = 1000 + e;  // rising: the best window ends at 129
  EXPECT_EQ(Ew4ChooseWindow(h), 115);
  EXPECT_EQ(Ew4EscapesOf(h, 115), 5 + 15 * 1000 + (100 + 114) * 15 / 2);
  ExponentHistogram flat{};
  flat.fill(1);
  EXPECT_EQ(Ew4ChooseWindow(flat), 0);  // ties: the lowest window
  const uint64_t seed = FreshSeed();
  Ew4Encoded e;
  ASSERT_EQ(Ew4RoundTrip(NormalBf16(512 * 512, 0.02, seed), 512, 512, 2, &e), "");
  // N(0, 0.02): 15 exponents hold all but ~1.5e-4 of the weights (those below 2^-18); 12 bits
  // per weight plus the per-row offsets and the escapes.
  EXPECT_LT(e.n_escapes(), 100);
  const double bits = 8.0 * e.stored_bytes() / (512.0 * 512.0);
  EXPECT_GT(bits, 12.0);
  EXPECT_LT(bits, 12.1);
}

TEST(Ew4Codec, ValidatorRefusesInconsistentFields) {
  // Two rows of 70 weights at exponent 120, with one escape each: row 0 column 5 (Inf) and
  // row 1 column 66 (a subnormal).
  std::vector<uint16_t> words(2 * 70, 0x3C00);
  words[5] = 0x7F80;
  words[70 + 66] = 0x0001;
  Ew4Encoded good;
  ASSERT_EQ(Ew4RoundTrip(words, 2, 70, 1, &good), "");
  ASSERT_EQ(good.escape_offsets, (std::vector<uint32_t>{0, 1, 2}));
  ASSERT_EQ(good.escape_columns, (std::vector<uint32_t>{5, 66}));
  struct Case {
    const char* expect;
    void (*spoil)(Ew4Encoded*);
  };
  const Case cases[] = {
      {"window 250 is outside [0, 241]", [](Ew4Encoded* e) { e->window_start = 250; }},
      {"escape_offsets must start at 0", [](Ew4Encoded* e) { e->escape_offsets[0] = 1; }},
      {"escape_offsets must start at 0", [](Ew4Encoded* e) { e->escape_offsets[2] = 1; }},
      // Row 0 would own entries [0, 3) of 2: refused before any entry is read.
      {"escape_offsets decrease at row 1", [](Ew4Encoded* e) { e->escape_offsets[1] = 3; }},
      {"escape_columns of row 0 must increase within [0, 70); entry 0 is 70",
       [](Ew4Encoded* e) { e->escape_columns[0] = 70; }},
      {"escape entry 0 names row 0 column 6, whose code is not 0",
       [](Ew4Encoded* e) { e->escape_columns[0] = 6; }},
      {"row 0 has 2 weights coded 0 (escape) but 1 escape entries",
       [](Ew4Encoded* e) { e->codes[7] &= 0xF0; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expect);
    Ew4Encoded bad = good;
    c.spoil(&bad);
    const std::string err = Ew4ValidateView(bad.View());
    EXPECT_NE(err.find(c.expect), std::string::npos) << err;
  }
  EXPECT_EQ(Ew4ValidateView(good.View()), "");
}

}  // namespace
}  // namespace df11
