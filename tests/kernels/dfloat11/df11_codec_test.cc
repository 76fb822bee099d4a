// SPDX-License-Identifier: Apache-2.0
// DF11 encoder + CPU decoder: bit-exact round trips over distributions and edge values, unit
// sizes around block boundaries, element sub-ranges, and the code's optimality and limits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/common/bf16.h"
#include "kernels/dfloat11/df11_code.h"
#include "tests/kernels/dfloat11/df11_test_util.h"

namespace df11 {
namespace {

using testing::FreshSeed;
using testing::NormalBf16;
using testing::RoundTrip;

TEST(Df11Codec, NormalDistributionsRoundTrip) {
  for (double sigma : {1e-4, 0.002, 0.02, 0.1, 1.0, 30.0}) {
    uint64_t seed = FreshSeed();
    SCOPED_TRACE("sigma " + std::to_string(sigma) + " seed " + std::to_string(seed));
    auto words = NormalBf16(100'003, sigma, seed);
    EXPECT_EQ(RoundTrip(words, 2), "");
  }
}

TEST(Df11Codec, SizeIsNearTheFieldSplitFloor) {
  // Trained-weight-like data: the stored fields stay within 0.25 bits/weight of
  // 8 (sign+mantissa) + the exponent entropy.
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto words = NormalBf16(4'000'000, 0.02, seed);
  Df11EncodedUnit unit;
  ASSERT_EQ(RoundTrip(words, 2, &unit), "");
  double bits = 8.0 * (unit.encoded_exponent.size() + unit.sign_mantissa.size() +
                       unit.gaps.size() + unit.output_positions.size() + unit.luts.size()) /
                words.size();
  double floor = 8.0 + HistogramEntropy(unit.histogram);
  EXPECT_GT(bits, floor);
  // The format's fixed costs: 5 gap bits per 64-bit window (~0.2 bits/weight at ~2.6 code
  // bits) and a prefix code's redundancy over the entropy (~0.05 on this data).
  EXPECT_LT(bits, floor + 0.26);
  // The exponent stream is exactly as long as an unrestricted Huffman code makes it.
  auto lengths = LengthLimitedCodeLengths(unit.histogram, 63);
  uint64_t huffman_bits = 0;
  for (int s = 0; s < 256; ++s) huffman_bits += unit.histogram[s] * lengths[s];
  EXPECT_EQ(unit.encoded_exponent.size(), (huffman_bits + 7) / 8);
}

TEST(Df11Codec, UniformExponentsAndAllCodableValues) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<uint16_t> words(200'000);
  for (auto& w : words) {
    uint32_t e = rng() % 240, sm = rng() & 0xFF;
    w = Df11Combine(e, sm);
  }
  // Every codable exponent at least once, with both signs.
  for (uint32_t e = 0; e < 240; ++e) {
    words.push_back(Df11Combine(e, 0x00));
    words.push_back(Df11Combine(e, 0xFF));
  }
  Df11EncodedUnit unit;
  EXPECT_EQ(RoundTrip(words, 2, &unit), "");
  EXPECT_EQ(unit.code.n_symbols, 240);
}

TEST(Df11Codec, SpecialValues) {
  std::vector<uint16_t> words = {
      0x0000, 0x8000,          // +0, -0
      0x0001, 0x807F, 0x0040,  // subnormals
      0x7F7F, 0xFF7F,          // max finite (exponent 254) is not codable: see below
  };
  words.resize(5);  // keep the codable ones
  words.push_back(0x7780);  // 2^112: exponent 239, the largest codable
  words.push_back(0xF7FF);
  for (int i = 0; i < 1000; ++i) words.push_back(static_cast<uint16_t>(0x3F80 + (i % 128)));
  EXPECT_EQ(RoundTrip(words), "");
}

TEST(Df11Codec, SingleRepeatedValue) {
  std::vector<uint16_t> words(70'000, 0x3C23);
  Df11EncodedUnit unit;
  EXPECT_EQ(RoundTrip(words, 1, &unit), "");
  EXPECT_EQ(unit.code.n_symbols, 1);
  EXPECT_EQ(unit.code.max_length, 1);
  EXPECT_EQ(unit.encoded_exponent.size(), (70'000u + 7) / 8);
}

TEST(Df11Codec, UncodableExponentIsRefused) {
  for (uint16_t bad : {0x7F80 /* +Inf */, 0x7FC0 /* NaN */, 0x7F7F /* max finite */,
                       0x7800 /* 2^113 */}) {
    std::vector<uint16_t> words(100, 0x3F80);
    words[42] = bad;
    Df11EncodedUnit unit;
    std::string err;
    std::span<const uint16_t> one(words);
    EXPECT_FALSE(Df11EncodeRef(std::span<const std::span<const uint16_t>>(&one, 1), 1, &unit, &err));
    EXPECT_NE(err.find("exponent"), std::string::npos) << err;
  }
}

// Two equally likely exponents give 1-bit codes, so n elements make exactly n bits.
std::vector<uint16_t> OneBitPerElement(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint16_t> words(n);
  for (int64_t i = 0; i < n; ++i) words[i] = Df11Combine(126 + (i & 1), rng() & 0xFF);
  return words;
}

TEST(Df11Codec, SizesAroundBlockBoundaries) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  EXPECT_EQ(RoundTrip(std::vector<uint16_t>{}), "");
  EXPECT_EQ(RoundTrip(std::vector<uint16_t>{0x3F80}), "");
  for (int64_t bytes : {1, 7, 8, 9, 4095, 4096, 4097, 8191, 8192, 8193, 3 * 4096 + 5}) {
    for (int64_t extra_bits : {-1, 0, 1}) {
      int64_t n = 8 * bytes + extra_bits;
      if (n <= 0) continue;
      SCOPED_TRACE("elements " + std::to_string(n));
      auto words = OneBitPerElement(n, seed + n);
      Df11EncodedUnit unit;
      EXPECT_EQ(RoundTrip(words, 2, &unit), "");
      EXPECT_EQ(static_cast<int64_t>(unit.encoded_exponent.size()), (n + 7) / 8);
      int64_t blocks = Df11BlockCount(unit.encoded_exponent.size());
      EXPECT_EQ(static_cast<int64_t>(unit.output_positions.size()), 4 * (blocks + 1));
      EXPECT_EQ(static_cast<int64_t>(unit.gaps.size()), 320 * blocks);
    }
  }
}

TEST(Df11Codec, ManyBlocksManyThreadsAndMatrices) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto a = NormalBf16(3'000'017, 0.02, seed);
  auto b = NormalBf16(1'234'567, 0.05, seed + 1);
  auto c = NormalBf16(17, 0.5, seed + 2);
  std::span<const uint16_t> parts[] = {a, b, c};
  Df11EncodedUnit unit;
  EXPECT_EQ(testing::RoundTrip(parts, 2, &unit), "");
  ASSERT_EQ(unit.split_positions.size(), 2u);
  EXPECT_EQ(unit.split_positions[0], 3'000'017);
  EXPECT_EQ(unit.split_positions[1], 3'000'017 + 1'234'567);
  // Threads do not change the bytes.
  Df11EncodedUnit one_thread;
  std::string err;
  ASSERT_TRUE(Df11EncodeRef(parts, 1, &one_thread, &err)) << err;
  EXPECT_EQ(one_thread.encoded_exponent, unit.encoded_exponent);
  EXPECT_EQ(one_thread.gaps, unit.gaps);
  EXPECT_EQ(one_thread.output_positions, unit.output_positions);
}

TEST(Df11Codec, ElementSubRanges) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  auto words = NormalBf16(200'000, 0.02, seed);
  Df11EncodedUnit unit;
  ASSERT_EQ(RoundTrip(words, 1, &unit), "");
  Df11UnitView view = unit.View();
  Df11CpuTables tables;
  BuildDf11CpuTables(view, &tables);
  std::mt19937_64 rng(seed);
  for (int trial = 0; trial < 50; ++trial) {
    int64_t a = rng() % words.size(), b = rng() % words.size();
    if (a > b) std::swap(a, b);
    std::vector<uint16_t> out(b - a, 0xDEAD);
    ASSERT_EQ(Df11DecodeRangeRef(view, tables, a, b, out.data()), "");
    ASSERT_TRUE(std::equal(out.begin(), out.end(), words.begin() + a)) << a << ".." << b;
  }
}

TEST(Df11Codec, WindowDecoderMatchesOnEveryShape) {
  // The GPU kernel's per-window algorithm (shared __host__ __device__ code), run on the CPU.
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::vector<std::vector<uint16_t>> cases = {
      NormalBf16(300'001, 0.02, seed), NormalBf16(5, 1.0, seed), OneBitPerElement(8 * 4096, seed),
      OneBitPerElement(8 * 4096 + 1, seed), OneBitPerElement(8 * 4096 - 1, seed),
      std::vector<uint16_t>(40'000, 0x3F80)};
  for (const auto& words : cases) {
    Df11EncodedUnit unit;
    ASSERT_EQ(RoundTrip(words, 1, &unit), "");
    for (bool late_cut : {false, true}) {  // kMultiCutEach and kMulti
      SCOPED_TRACE(late_cut ? "late cut" : "cut per lookup");
      std::vector<uint16_t> out(words.size(), 0xDEAD);
      ASSERT_EQ(Df11DecodeWindowsRef(unit.View(), 0, words.size(), out.data(), late_cut), "");
      EXPECT_EQ(out, words);
      if (words.size() > 1000) {
        std::vector<uint16_t> part(500, 0xDEAD);
        ASSERT_EQ(Df11DecodeWindowsRef(unit.View(), 333, 833, part.data(), late_cut), "");
        EXPECT_TRUE(std::equal(part.begin(), part.end(), words.begin() + 333));
      }
    }
  }
}

TEST(Df11Code, PackageMergeIsOptimalAndRespectsTheLimit) {
  // Fibonacci counts force a maximally deep Huffman tree: 40 symbols want lengths up to 39.
  ExponentHistogram h{};
  uint64_t f0 = 1, f1 = 1;
  for (int s = 0; s < 40; ++s) {
    h[s] = f0;
    uint64_t next = f0 + f1;
    f0 = f1;
    f1 = next;
  }
  auto unlimited = LengthLimitedCodeLengths(h, 63);
  EXPECT_EQ(*std::max_element(unlimited.begin(), unlimited.end()), 39);
  Df11Code code;
  std::string err;
  ASSERT_TRUE(BuildDf11Code(h, &code, &err)) << err;
  EXPECT_LE(code.max_length, 32);
  EXPECT_LE(Df11SubTableCount(code), 16);
  // Kraft: sum 2^-len == 1 (complete code).
  double kraft = 0;
  for (int s = 0; s < 256; ++s) {
    if (code.length[s]) kraft += std::ldexp(1.0, -code.length[s]);
  }
  EXPECT_DOUBLE_EQ(kraft, 1.0);
  // Optimal among limited codes: no worse than a flat 6-bit code, and the unlimited optimum is
  // a lower bound.
  auto cost = [&](const std::array<uint8_t, 256>& len) {
    double c = 0;
    for (int s = 0; s < 256; ++s) c += static_cast<double>(h[s]) * len[s];
    return c;
  };
  EXPECT_GE(cost(code.length), cost(unlimited));
  std::array<uint8_t, 256> flat{};
  for (int s = 0; s < 40; ++s) flat[s] = 6;
  EXPECT_LE(cost(code.length), cost(flat));
  // The skewed data still round-trips.
  std::vector<uint16_t> words;
  for (int s = 0; s < 40; ++s) {
    for (uint64_t k = 0; k < std::min<uint64_t>(h[s], 3000); ++k) {
      words.push_back(Df11Combine(s + 100, k & 0xFF));
    }
  }
  EXPECT_EQ(RoundTrip(words), "");
}

}  // namespace
}  // namespace df11
