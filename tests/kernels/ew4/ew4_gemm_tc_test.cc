// SPDX-License-Identifier: Apache-2.0
// The tensor-core decode-GEMM's CPU reference (ew4_gemm_tc.h): the A-fragment mapping covers
// each 16 x 16 tile once; every fragment decoded from ew4 equals the raw BF16 weights (normal,
// skewed, escape-heavy and every-exponent matrices, ragged rows and columns); the reference
// GEMM on ew4 weights is bit-identical to the same reference on the raw weights for batches
// 1-256 (odd ones included), with and without bias, over one or several k slices; it is a GEMM
// (close to a double-precision sum of the BF16-rounded products); a token's outputs depend
// neither on the batch around it nor on the thread count; the k slices tile the blocks.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

#include "kernels/common/bf16.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_gemm_tc.h"
#include "tests/kernels/dfloat11/df11_test_util.h"
#include "tests/kernels/ew4/ew4_test_util.h"

namespace df11 {
namespace {

using testing::FirstMismatches;
using testing::FreshSeed;

struct Problem {
  int64_t n, k;
  std::vector<uint16_t> w;     // (n, k)
  Ew4Encoded ew4;
  std::vector<uint16_t> bias;  // (n)
  std::vector<float> x;        // (kEw4TcMaxBatch, k)
};

enum class Weights { kNormal, kSkewed, kWide };

// Weights of the kind asked for (normal ones with ~1 % far outside its exponents), at least one
// escape; activations N(0, 1).
Problem MakeProblem(int64_t n, int64_t k, uint64_t seed, Weights kind = Weights::kNormal,
                    int32_t window_start = -1) {
  Problem p{n, k, {}, {}, {}, {}};
  switch (kind) {
    case Weights::kNormal: p.w = testing::NormalBf16(n * k, 0.02, seed); break;
    case Weights::kSkewed: p.w = testing::SkewedBf16(n * k, seed); break;
    case Weights::kWide: p.w = testing::WideExponentBf16(n * k, seed); break;
  }
  std::mt19937_64 rng(seed + 1);
  if (kind == Weights::kNormal) {
    for (auto& w : p.w) {
      if (rng() % 100 == 0) w = FloatToBf16(std::ldexp(1.0f, 10 + static_cast<int>(rng() % 8)));
    }
    p.w[(n * k) / 2] = FloatToBf16(-std::ldexp(1.0f, -40));
  }
  EXPECT_EQ(Ew4EncodeRef(p.w.data(), n, k, 2, &p.ew4, window_start), "");
  EXPECT_EQ(Ew4ValidateView(p.ew4.View()), "");
  p.bias = testing::NormalBf16(n, 0.1, seed + 2);
  std::normal_distribution<float> d(0.0f, 1.0f);
  p.x.resize(static_cast<size_t>(kEw4TcMaxBatch * k));
  for (auto& v : p.x) v = d(rng);
  return p;
}

std::vector<float> Poisoned(int64_t n) { return std::vector<float>(n, std::nanf("")); }

const std::pair<int64_t, int64_t> kShapes[] = {{1, 1}, {16, 64}, {37, 200}, {64, 1000},
                                               {130, 129}, {5, 15}, {40, 2048}};

TEST(Ew4GemmTc, FragmentMappingCoversEachTileWeightOnce) {
  std::set<std::pair<int, int>> seen;
  for (int lane = 0; lane < 32; ++lane) {
    for (int e = 0; e < kEw4TcFragWords; ++e) {
      const int r = Ew4TcFragRow(lane, e), c = Ew4TcFragCol(lane, e);
      ASSERT_TRUE(r >= 0 && r < 16 && c >= 0 && c < 16) << lane << " " << e;
      EXPECT_TRUE(seen.insert({r, c}).second) << "lane " << lane << " word " << e;
    }
  }
  EXPECT_EQ(seen.size(), 256u);
  // The PTX layout: a0/a1 row g, a2/a3 row g + 8, a4-a7 the same 8 columns on.
  EXPECT_EQ(Ew4TcFragRow(5, 0), 1);
  EXPECT_EQ(Ew4TcFragCol(5, 0), 2);
  EXPECT_EQ(Ew4TcFragRow(5, 3), 9);
  EXPECT_EQ(Ew4TcFragCol(5, 3), 3);
  EXPECT_EQ(Ew4TcFragCol(5, 6), 10);
}

TEST(Ew4GemmTc, DecodedFragmentsEqualTheRawWeights) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (Weights kind : {Weights::kNormal, Weights::kSkewed, Weights::kWide}) {
    for (auto [n, k] : kShapes) {
      for (int32_t window : {-1, 200}) {  // 200: nearly every normal weight escapes
        SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(k) + " kind " +
                     std::to_string(static_cast<int>(kind)) + " window " +
                     std::to_string(window));
        Problem p = MakeProblem(n, k, seed + n * k, kind, window);
        const Ew4View v = p.ew4.View();
        int64_t bad = 0;
        const int64_t padded_k = (k + 63) / 64 * 64;
        for (int64_t row0 = 0; row0 < n; row0 += 16) {
          for (int64_t col0 = 0; col0 < padded_k; col0 += 16) {
            for (int lane = 0; lane < 32; ++lane) {
              uint16_t got[kEw4TcFragWords], want[kEw4TcFragWords];
              Ew4TcFragmentRef(v, row0, col0, lane, got);
              Bf16TcFragmentRef(p.w.data(), n, k, row0, col0, lane, want);
              for (int e = 0; e < kEw4TcFragWords; ++e) {
                if (got[e] != want[e] && bad++ < 5) {
                  ADD_FAILURE() << "tile (" << row0 << ", " << col0 << ") lane " << lane
                                << " word " << e << ": " << got[e] << " != " << want[e];
                }
              }
            }
          }
        }
        EXPECT_EQ(bad, 0);
      }
    }
  }
}

TEST(Ew4GemmTc, Ew4OutputsBitIdenticalToTheSameOrderOnRawWeights) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (auto [n, k] : kShapes) {
    Problem p = MakeProblem(n, k, seed + 7 * n + k);
    for (int64_t m : {1, 2, 7, 8, 9, 16, 33, 64, 127, 128, 200, 255, 256}) {
      for (const uint16_t* bias : {static_cast<const uint16_t*>(nullptr),
                                   static_cast<const uint16_t*>(p.bias.data())}) {
        SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(k) + ", batch " +
                     std::to_string(m) + (bias ? ", bias" : ""));
        std::vector<float> want = Poisoned(m * n), got = Poisoned(m * n);
        Bf16GemmTcRef(p.x.data(), p.w.data(), bias, want.data(), m, n, k, 2);
        Ew4GemmTcRef(p.x.data(), p.ew4.View(), bias, got.data(), m, 2);
        ASSERT_EQ(FirstMismatches(want, got), "");
      }
    }
  }
}

TEST(Ew4GemmTc, EscapeHeavyAndEveryExponentMatricesStayBitIdentical) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (Weights kind : {Weights::kSkewed, Weights::kWide}) {
    for (int32_t window : {-1, 100}) {
      Problem p = MakeProblem(37, 200, seed, kind, window);
      for (int64_t m : {1, 17, 256}) {
        std::vector<float> want = Poisoned(m * 37), got = Poisoned(m * 37);
        Bf16GemmTcRef(p.x.data(), p.w.data(), p.bias.data(), want.data(), m, 37, 200, 2);
        Ew4GemmTcRef(p.x.data(), p.ew4.View(), p.bias.data(), got.data(), m, 2);
        EXPECT_EQ(FirstMismatches(want, got), "") << "batch " << m << " window " << window;
      }
    }
  }
}

TEST(Ew4GemmTc, IsAGemmOfTheBf16RoundedActivations) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (auto [n, k] : kShapes) {
    Problem p = MakeProblem(n, k, seed + n + k);
    const int64_t m = 19;
    std::vector<float> y = Poisoned(m * n);
    Ew4GemmTcRef(p.x.data(), p.ew4.View(), p.bias.data(), y.data(), m, 2);
    for (int64_t b = 0; b < m; ++b) {
      for (int64_t j = 0; j < n; ++j) {
        double sum = 0, magnitude = 0;
        for (int64_t i = 0; i < k; ++i) {
          const double term = static_cast<double>(Bf16ToFloat(p.w[j * k + i])) *
                              Bf16ToFloat(FloatToBf16(p.x[b * k + i]));
          sum += term;
          magnitude += std::fabs(term);
        }
        sum += Bf16ToFloat(p.bias[j]);
        magnitude += std::fabs(Bf16ToFloat(p.bias[j]));
        // One FP32 rounding per k16 step, per slice and for the bias, each within 2^-24 of a
        // partial sum no larger than `magnitude`.
        const double roundings = static_cast<double>(k / 16 + Ew4GemmTcSplits(n, k) + 2);
        const double tolerance = roundings * std::ldexp(magnitude, -24);
        ASSERT_NEAR(y[b * n + j], sum, tolerance) << n << " x " << k << " (" << b << ", " << j
                                                  << ")";
      }
    }
  }
}

TEST(Ew4GemmTc, TokenOutputsDependNeitherOnTheBatchNorOnThreads) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Problem p = MakeProblem(70, 1000, seed);
  const int64_t n = 70, m = 150;
  std::vector<float> all = Poisoned(m * n);
  Ew4GemmTcRef(p.x.data(), p.ew4.View(), p.bias.data(), all.data(), m, 1);
  std::vector<float> threaded = Poisoned(m * n);
  Ew4GemmTcRef(p.x.data(), p.ew4.View(), p.bias.data(), threaded.data(), m, 3);
  EXPECT_EQ(FirstMismatches(all, threaded), "");
  for (int64_t b : {0, 77, 149}) {
    std::vector<float> one = Poisoned(n);
    Ew4GemmTcRef(p.x.data() + b * 1000, p.ew4.View(), p.bias.data(), one.data(), 1, 2);
    EXPECT_EQ(FirstMismatches(std::vector<float>(all.begin() + b * n, all.begin() + (b + 1) * n),
                              one),
              "")
        << "token " << b;
  }
}

TEST(Ew4GemmTc, KSlicesTileTheBlocksAndOnlyShortGridsSplit) {
  for (auto [n, k] : {std::pair<int64_t, int64_t>{4096, 4096}, {14336, 4096}, {4096, 14336},
                      {128256, 4096}, {1024, 4096}, {40, 2048}, {1, 1}, {7, 0}, {512, 100}}) {
    SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(k));
    const int splits = Ew4GemmTcSplits(n, k);
    const int64_t blocks = (k + 63) / 64;
    ASSERT_GE(splits, 1);
    EXPECT_EQ(Ew4GemmTcSliceBegin(k, splits, 0), 0);
    EXPECT_EQ(Ew4GemmTcSliceBegin(k, splits, splits), blocks);
    for (int t = 0; t < splits && blocks > 0; ++t) {
      EXPECT_LT(Ew4GemmTcSliceBegin(k, splits, t), Ew4GemmTcSliceBegin(k, splits, t + 1));
    }
    EXPECT_EQ(Ew4GemmTcWorkspaceFloats(256, n, k), splits > 1 ? splits * 256 * n : 0);
  }
  // The 32 row tiles of o_proj / the 4096 x 4096 projections are short of 132 SMs: split.
  EXPECT_GT(Ew4GemmTcSplits(4096, 4096), 1);
  EXPECT_GT(Ew4GemmTcSplits(4096, 14336), 1);
  EXPECT_GT(Ew4GemmTcSplits(40, 2048), 1);
  // The head's 1002 row tiles fill the GPU alone.
  EXPECT_EQ(Ew4GemmTcSplits(128256, 4096), 1);
}

}  // namespace
}  // namespace df11
