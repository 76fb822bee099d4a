// SPDX-License-Identifier: Apache-2.0
// GemmBf16Ref against a double-precision y = x · wᵀ + bias over the same BF16 weights; GemmBf16Cpu
// at every CPU level this machine has bit-identical to GemmBf16Ref (GEMV and GEMM block shapes,
// k tails), whatever the thread count and whatever other rows share the batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/cpu_features.h"
#include "kernels/gemm/gemm.h"
#include "tests/kernels/kernel_test_util.h"

namespace df11 {
namespace {

struct Problem {
  int64_t m, n, k;
  std::vector<float> x;       // (m, k)
  std::vector<uint16_t> w;    // (n, k)
  std::vector<uint16_t> bias;  // (n) or empty
};

Problem MakeProblem(int64_t m, int64_t n, int64_t k, bool with_bias, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> ux(-1.0f, 1.0f);
  std::normal_distribution<float> nw(0.0f, 0.05f);
  Problem p{m, n, k, std::vector<float>(m * k), std::vector<uint16_t>(n * k), {}};
  for (auto& v : p.x) v = ux(rng);
  for (auto& v : p.w) v = FloatToBf16(nw(rng));
  if (with_bias) {
    p.bias.resize(n);
    for (auto& v : p.bias) v = FloatToBf16(nw(rng) * 10.0f);
  }
  return p;
}

std::vector<double> Reference(const Problem& p) {
  std::vector<double> y(p.m * p.n);
  for (int64_t i = 0; i < p.m; ++i) {
    for (int64_t j = 0; j < p.n; ++j) {
      double s = p.bias.empty() ? 0.0 : Bf16ToFloat(p.bias[j]);
      for (int64_t l = 0; l < p.k; ++l) s += double{p.x[i * p.k + l]} * Bf16ToFloat(p.w[j * p.k + l]);
      y[i * p.n + j] = s;
    }
  }
  return y;
}

using GemmFn = void (*)(const float*, const uint16_t*, const uint16_t*, float*, int64_t, int64_t,
                       int64_t, int);

// y poisoned with NaN first, so an element no kernel writes shows.
std::vector<float> Multiply(const Problem& p, int threads, GemmFn gemm = GemmBf16Cpu) {
  std::vector<float> y(p.m * p.n, std::numeric_limits<float>::quiet_NaN());
  gemm(p.x.data(), p.w.data(), p.bias.empty() ? nullptr : p.bias.data(), y.data(), p.m, p.n, p.k,
       threads);
  return y;
}

// "" when a and b hold the same bits, else the first mismatches as (row, column).
std::string CompareBits(const std::vector<float>& want, const std::vector<float>& got,
                        int64_t n) {
  std::string report;
  int64_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::memcmp(&want[i], &got[i], sizeof(float)) == 0) continue;
    if (++bad <= 8) {
      char line[160];
      std::snprintf(line, sizeof(line), "  (%lld, %lld) expected %.9g actual %.9g\n",
                    static_cast<long long>(i / n), static_cast<long long>(i % n), want[i], got[i]);
      report += line;
    }
  }
  return bad == 0 ? "" : std::to_string(bad) + " elements differ, first:\n" + report;
}

// Restores the CPU level a test changed.
class CpuLevelGuard {
 public:
  CpuLevelGuard() : saved_(ActiveCpuLevel()) {}
  ~CpuLevelGuard() { SetCpuLevel(saved_); }

 private:
  CpuLevel saved_;
};

// x in [-1, 1], w ~ N(0, 0.05): |y| up to ~3 at k = 4099; FP32 accumulation error stays ~1e-5.
constexpr double kAtol = 1e-4;
constexpr double kRtol = 1e-4;

TEST(GemmBf16, MatchesDoubleReference) {
  struct Shape { int64_t m, n, k; bool bias; };
  const Shape shapes[] = {{1, 1, 1, false},    {1, 300, 4099, false}, {1, 257, 64, true},
                          {2, 1, 1, true},     {3, 129, 17, false},   {7, 300, 4099, true},
                          {16, 256, 256, false}, {33, 513, 100, true}};
  for (const Shape& s : shapes) {
    uint64_t seed = FreshSeed();
    SCOPED_TRACE("m " + std::to_string(s.m) + " n " + std::to_string(s.n) + " k " +
                 std::to_string(s.k) + " bias " + std::to_string(s.bias) + " seed " +
                 std::to_string(seed));
    Problem p = MakeProblem(s.m, s.n, s.k, s.bias, seed);
    EXPECT_EQ(CompareClose(Reference(p), Multiply(p, 2, GemmBf16Ref), kAtol, kRtol), "");
  }
}

// Every level this CPU has gives GemmBf16Ref's bits: batch sizes around each kernel's block of
// x rows, w rows around its block and the thread chunk, k with and without a tail of k % 16.
TEST(GemmBf16, EveryCpuLevelIsBitIdenticalToTheReference) {
  CpuLevelGuard guard;
  struct Shape { int64_t m, n, k; bool bias; };
  const Shape shapes[] = {{1, 1, 1, false},   {1, 97, 1024, true},  {2, 50, 33, false},
                          {3, 49, 16, true},   {4, 13, 15, false},   {5, 100, 48, true},
                          {6, 7, 100, false},  {7, 48, 64, true},    {8, 97, 1024, false},
                          {9, 31, 17, true},   {13, 96, 256, false}, {16, 50, 4099, true},
                          {17, 145, 80, false}, {33, 200, 1040, true}, {61, 40, 4099, false}};
  for (int l = 0; l <= static_cast<int>(CpuLevel::kAvx512Bf16); ++l) {
    const CpuLevel level = static_cast<CpuLevel>(l);
    if (SetCpuLevel(level) != level) {
      std::printf("level %s: not on this CPU\n", CpuLevelName(level));
      continue;
    }
    for (const Shape& s : shapes) {
      const uint64_t seed = FreshSeed();
      SCOPED_TRACE(std::string("level ") + CpuLevelName(level) + " m " + std::to_string(s.m) +
                   " n " + std::to_string(s.n) + " k " + std::to_string(s.k) + " bias " +
                   std::to_string(s.bias) + " seed " + std::to_string(seed));
      const Problem p = MakeProblem(s.m, s.n, s.k, s.bias, seed);
      EXPECT_EQ(CompareBits(Multiply(p, 1, GemmBf16Ref), Multiply(p, 2), s.n), "");
    }
  }
}

// A row's result does not depend on the rows beside it: each row of a batch of 13 (GEMM blocks
// and a remainder) equals the same row multiplied alone (the GEMV path).
TEST(GemmBf16, BatchCompositionDoesNotChangeARow) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const Problem batch = MakeProblem(13, 300, 1000, true, seed);
  const std::vector<float> together = Multiply(batch, 2);
  for (int64_t r = 0; r < batch.m; ++r) {
    Problem one = batch;
    one.m = 1;
    one.x.assign(batch.x.begin() + r * batch.k, batch.x.begin() + (r + 1) * batch.k);
    const std::vector<float> alone = Multiply(one, 2);
    const std::vector<float> row(together.begin() + r * batch.n,
                                 together.begin() + (r + 1) * batch.n);
    EXPECT_EQ(CompareBits(alone, row, batch.n), "") << "row " << r;
  }
}

TEST(GemmBf16, BitIdenticalForAnyThreadCount) {
  for (int64_t m : {1, 5, 20}) {
    uint64_t seed = FreshSeed();
    SCOPED_TRACE("m " + std::to_string(m) + " seed " + std::to_string(seed));
    Problem p = MakeProblem(m, 777, 1000, true, seed);  // several chunks, a partial last one
    std::vector<float> one = Multiply(p, 1);
    for (int threads : {2, 3, 8}) {
      EXPECT_EQ(CompareBits(one, Multiply(p, threads), p.n), "") << "threads " << threads;
    }
  }
}

// Weights handed over a tile at a time (as a codec decodes them) give GemmBf16Cpu's bits, every
// tile asked for exactly once, for shapes with a partial last tile and batches of decode and
// prefill size.
TEST(GemmBf16, RowsFromASourceGiveTheSameBits) {
  for (int64_t m : {1, 9, 50}) {
    for (int64_t n : {1, 47, 48, 49, 130}) {
      const uint64_t seed = FreshSeed();
      SCOPED_TRACE("m " + std::to_string(m) + " n " + std::to_string(n) + " seed " +
                   std::to_string(seed));
      const Problem p = MakeProblem(m, n, 100, n % 2 == 1, seed);
      const std::vector<float> want = Multiply(p, 1);
      for (int threads : {1, 3}) {
        std::vector<std::atomic<int>> asked(static_cast<size_t>(n));
        const GemmWeightRows rows = [&](int64_t j0, int64_t j1, uint16_t* out) {
          for (int64_t j = j0; j < j1; ++j) asked[j].fetch_add(1);
          std::copy(p.w.begin() + j0 * p.k, p.w.begin() + j1 * p.k, out);
        };
        std::vector<float> got(m * n, std::numeric_limits<float>::quiet_NaN());
        GemmBf16RowsCpu(p.x.data(), rows, p.bias.empty() ? nullptr : p.bias.data(), got.data(),
                        m, n, p.k, threads);
        EXPECT_EQ(CompareBits(want, got, n), "") << threads << " threads";
        for (int64_t j = 0; j < n; ++j) ASSERT_EQ(asked[j].load(), 1) << "row " << j;
      }
    }
  }
}

}  // namespace
}  // namespace df11
