// SPDX-License-Identifier: Apache-2.0
// The CPU fused decode-GEMV: for ew4 weights, every instruction set this CPU has (AVX-512,
// AVX2, scalar) gives outputs bit-identical to the same summation order on the raw BF16
// weights (Bf16GemvOrderedRef), at every batch 1..8, with and without bias, escapes and partial
// blocks included; the raw-BF16 vector paths match too; the result is a GEMV (close to a
// double-precision sum) and depends neither on the thread count nor on the batch.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kernels/common/bf16.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_gemv.h"
#include "kernels/gemm/gemm.h"
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
  std::vector<float> x;        // (8, k)
};

// Weights N(0, 0.02) with ~1 % of values far outside its exponents (escapes, at least one),
// activations N(0, 1).
Problem MakeProblem(int64_t n, int64_t k, uint64_t seed, int32_t window_start = -1) {
  Problem p{n, k, testing::NormalBf16(n * k, 0.02, seed), {}, {}, {}};
  std::mt19937_64 rng(seed + 1);
  auto far = [&rng] {
    const int exponent = rng() % 2 ? -40 + static_cast<int>(rng() % 10) : 10 + static_cast<int>(rng() % 10);
    return FloatToBf16((rng() % 2 ? -1.0f : 1.0f) * std::ldexp(1.0f + (rng() % 128) / 128.0f, exponent));
  };
  for (auto& w : p.w) {
    if (rng() % 100 == 0) w = far();
  }
  p.w[3 % (n * k)] = far();
  EXPECT_EQ(Ew4EncodeRef(p.w.data(), n, k, 2, &p.ew4, window_start), "");
  EXPECT_EQ(Ew4ValidateView(p.ew4.View()), "");
  p.bias = testing::NormalBf16(n, 0.1, seed + 2);
  std::normal_distribution<float> d(0.0f, 1.0f);
  p.x.resize(static_cast<size_t>(kEw4GemvMaxBatch * k));
  for (auto& v : p.x) v = d(rng);
  return p;
}

std::vector<float> Poisoned(int64_t n) { return std::vector<float>(n, std::nanf("")); }

const CpuLevel kLevels[] = {CpuLevel::kScalar, CpuLevel::kAvx2, CpuLevel::kAvx512};

TEST(Ew4Gemv, EveryPathMatchesTheOrderOnRawWeightsBitForBit) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed) + ", this CPU: " +
               CpuLevelName(DetectedCpuLevel()));
  // The last shape's rows are longer than the vector paths' k-chunks at every batch from 2 on
  // (4096 columns at batch 2), so partial sums carry across chunks, escapes included.
  for (auto [n, k] : {std::pair<int64_t, int64_t>{37, 256}, {9, 64}, {20, 333}, {5, 40},
                      {64, 1000}, {19, 4200}}) {
    Problem p = MakeProblem(n, k, seed + n * k);
    ASSERT_GT(p.ew4.n_escapes(), 0);
    for (int64_t m = 1; m <= kEw4GemvMaxBatch; ++m) {
      for (const uint16_t* bias : {static_cast<const uint16_t*>(nullptr),
                                   static_cast<const uint16_t*>(p.bias.data())}) {
        SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(k) + ", batch " +
                     std::to_string(m) + (bias ? ", bias" : ""));
        std::vector<float> want = Poisoned(m * n);
        Bf16GemvOrderedRef(p.x.data(), p.w.data(), bias, want.data(), m, n, k, 2);
        std::vector<float> got = Poisoned(m * n);
        Ew4GemvRef(p.x.data(), p.ew4.View(), bias, got.data(), m, 2);
        EXPECT_EQ(FirstMismatches(want, got), "") << "Ew4GemvRef";
        for (CpuLevel level : kLevels) {
          SCOPED_TRACE(CpuLevelName(level));
          got = Poisoned(m * n);
          Ew4GemvCpu(p.x.data(), p.ew4.View(), bias, got.data(), m, 2, level);
          EXPECT_EQ(FirstMismatches(want, got), "") << "Ew4GemvCpu";
          got = Poisoned(m * n);
          Bf16GemvOrderedCpu(p.x.data(), p.w.data(), bias, got.data(), m, n, k, 2, level);
          EXPECT_EQ(FirstMismatches(want, got), "") << "Bf16GemvOrderedCpu";
        }
      }
    }
  }
}

TEST(Ew4Gemv, AllEscapeWeightsAreExactToo) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Problem p = MakeProblem(12, 200, seed, /*window_start=*/200);
  ASSERT_EQ(p.ew4.n_escapes(), 12 * 200);
  for (int64_t m : {1, 3, 8}) {
    std::vector<float> want = Poisoned(m * 12);
    Bf16GemvOrderedRef(p.x.data(), p.w.data(), p.bias.data(), want.data(), m, 12, 200, 1);
    for (CpuLevel level : kLevels) {
      std::vector<float> got = Poisoned(m * 12);
      Ew4GemvCpu(p.x.data(), p.ew4.View(), p.bias.data(), got.data(), m, 1, level);
      EXPECT_EQ(FirstMismatches(want, got), "") << CpuLevelName(level) << " batch " << m;
    }
  }
}

TEST(Ew4Gemv, IsAGemvIndependentOfThreadsAndBatch) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t n = 70, k = 515;
  Problem p = MakeProblem(n, k, seed);
  std::vector<float> y8 = Poisoned(8 * n);
  Ew4GemvCpu(p.x.data(), p.ew4.View(), p.bias.data(), y8.data(), 8, 1);
  for (int threads : {2, 5}) {
    std::vector<float> again = Poisoned(8 * n);
    Ew4GemvCpu(p.x.data(), p.ew4.View(), p.bias.data(), again.data(), 8, threads);
    EXPECT_EQ(FirstMismatches(y8, again), "") << threads << " threads";
  }
  for (int64_t b = 0; b < 8; ++b) {
    std::vector<float> one = Poisoned(n);
    Ew4GemvCpu(p.x.data() + b * k, p.ew4.View(), p.bias.data(), one.data(), 1, 2);
    EXPECT_EQ(FirstMismatches(std::vector<float>(y8.begin() + b * n, y8.begin() + (b + 1) * n),
                              one), "") << "batch row " << b;
    for (int64_t j = 0; j < n; ++j) {
      double exact = Bf16ToFloat(p.bias[j]), magnitude = 0;
      for (int64_t i = 0; i < k; ++i) {
        const double t = static_cast<double>(Bf16ToFloat(p.w[j * k + i])) * p.x[b * k + i];
        exact += t;
        magnitude += std::fabs(t);
      }
      ASSERT_NEAR(y8[b * n + j], exact, 1e-6 * magnitude + 1e-30) << "row " << j;
    }
  }
}

// Steps above the fused GEMV's batch: the BF16 GEMM's bits on the decoded weights, escapes and
// partial blocks included, for any thread count.
TEST(Ew4Gemm, TilesDecodedAsMultipliedGiveTheBf16GemmBits) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t n = 101, k = 300, m = 23;
  const Problem p = MakeProblem(n, k, seed);
  std::vector<float> x(static_cast<size_t>(m * k));
  for (int64_t i = 0; i < m * k; ++i) x[i] = p.x[i % (kEw4GemvMaxBatch * k)] * (1 + i % 3);
  for (bool bias : {true, false}) {
    std::vector<float> want = Poisoned(m * n);
    GemmBf16Cpu(x.data(), p.w.data(), bias ? p.bias.data() : nullptr, want.data(), m, n, k, 1);
    for (int threads : {1, 2, 5}) {
      std::vector<float> got = Poisoned(m * n);
      Ew4GemmCpu(x.data(), p.ew4.View(), bias ? p.bias.data() : nullptr, got.data(), m, threads);
      EXPECT_EQ(FirstMismatches(want, got), "") << threads << " threads, bias " << bias;
    }
  }
}

}  // namespace
}  // namespace df11
