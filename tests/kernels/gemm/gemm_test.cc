// SPDX-License-Identifier: Apache-2.0
// GemmBf16Ref against a double-precision y = x · wᵀ + bias over the same BF16 weights, for the
// GEMV (m == 1) and tiled BLAS (m > 1) paths, with shapes around the tile size, and bit-identical
// results for every thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
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

std::vector<float> Multiply(const Problem& p, int threads) {
  std::vector<float> y(p.m * p.n, std::numeric_limits<float>::quiet_NaN());
  GemmBf16Ref(p.x.data(), p.w.data(), p.bias.empty() ? nullptr : p.bias.data(), y.data(), p.m,
              p.n, p.k, threads);
  return y;
}

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
    EXPECT_EQ(CompareClose(Reference(p), Multiply(p, 2), kAtol, kRtol), "");
  }
}

TEST(GemmBf16, BitIdenticalForAnyThreadCount) {
  for (int64_t m : {1, 5}) {
    uint64_t seed = FreshSeed();
    SCOPED_TRACE("m " + std::to_string(m) + " seed " + std::to_string(seed));
    Problem p = MakeProblem(m, 777, 1000, true, seed);  // several tiles, a partial last one
    std::vector<float> one = Multiply(p, 1);
    for (int threads : {2, 3, 8}) {
      std::vector<float> many = Multiply(p, threads);
      EXPECT_EQ(std::memcmp(one.data(), many.data(), one.size() * sizeof(float)), 0)
          << "threads " << threads;
    }
  }
}

}  // namespace
}  // namespace df11
