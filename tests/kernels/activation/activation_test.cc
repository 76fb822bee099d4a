// SPDX-License-Identifier: Apache-2.0
// SwiGluRef against silu(g) * u in double (and at the extremes of exp), in place; AddRef exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/activation/activation.h"
#include "tests/kernels/kernel_test_util.h"

namespace df11 {
namespace {

// A handful of FP32 roundings (exp, add, divide, multiply): a few ulps.
constexpr double kAtol = 1e-7;
constexpr double kRtol = 1e-6;

TEST(SwiGlu, MatchesDoubleReference) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  const int64_t n = 10'001;
  std::vector<float> gate(n), up(n);
  for (auto& v : gate) v = dist(rng);
  for (auto& v : up) v = dist(rng);
  gate[0] = -200.0f;  // exp(200) overflows FP32: silu must give -0, not NaN
  gate[1] = 200.0f;
  gate[2] = 0.0f;
  std::vector<double> expected(n);
  for (int64_t i = 0; i < n; ++i) expected[i] = gate[i] / (1.0 + std::exp(-double{gate[i]})) * up[i];
  std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());
  SwiGluRef(gate.data(), up.data(), out.data(), n);
  EXPECT_EQ(CompareClose(expected, out, kAtol, kRtol), "");

  SwiGluRef(gate.data(), up.data(), gate.data(), n);  // in place over gate
  EXPECT_EQ(std::memcmp(gate.data(), out.data(), n * sizeof(float)), 0);
}

TEST(Add, IsExactFp32Addition) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t n = 4097;
  std::vector<float> x(n), y(n);
  for (auto& v : x) v = dist(rng);
  for (auto& v : y) v = dist(rng);
  // The double sum of two such floats is exact, so rounding it once gives IEEE FP32 addition.
  std::vector<double> expected(n);
  for (int64_t i = 0; i < n; ++i) expected[i] = static_cast<float>(double{x[i]} + y[i]);
  AddRef(x.data(), y.data(), n);
  EXPECT_EQ(CompareClose(expected, x, 0.0, 0.0), "");
}

}  // namespace
}  // namespace df11
