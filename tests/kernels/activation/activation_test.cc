// SPDX-License-Identifier: Apache-2.0
// GatedActivationRef for each config "hidden_act" against act(g) * u in double (and at the
// extremes of exp/tanh/erf), in place; AddRef exactly; SoftcapRef against cap * tanh(x / cap).
#include "kernels/activation/activation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <numbers>
#include <random>
#include <string>
#include <vector>

#include "tests/kernels/kernel_test_util.h"

namespace df11 {
namespace {

struct Case {
  GateActivation act;
  const char* name;
  std::function<double(double)> exact;
  // A handful of FP32 roundings: a few ulps. GELU's 1 + erf(g) / 1 + tanh(...) cancels for
  // negative g, so its error is absolute (a few ulps of 1, times |g|).
  double atol, rtol;
};

const Case kCases[] = {
    {GateActivation::kSilu, "silu", [](double g) { return g / (1.0 + std::exp(-g)); }, 1e-7, 1e-6},
    {GateActivation::kGeluTanh, "gelu_pytorch_tanh",
     [](double g) {
       const double k = std::sqrt(2.0 / std::numbers::pi);
       return 0.5 * g * (1.0 + std::tanh(k * (g + 0.044715 * g * g * g)));
     },
     1e-6, 1e-6},
    {GateActivation::kGelu, "gelu",
     [](double g) { return 0.5 * g * (1.0 + std::erf(g / std::numbers::sqrt2)); }, 1e-6, 1e-6},
};

TEST(GatedActivation, MatchesDoubleReference) {
  for (const Case& c : kCases) {
    uint64_t seed = FreshSeed();
    SCOPED_TRACE(std::string(c.name) + " seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> dist(0.0f, 3.0f);
    const int64_t n = 10'001;
    std::vector<float> gate(n), up(n);
    for (auto& v : gate) v = dist(rng);
    for (auto& v : up) v = dist(rng);
    gate[0] = -200.0f;  // exp(200) overflows FP32: silu must give -0, not NaN
    gate[1] = 200.0f;
    gate[2] = 0.0f;
    gate[3] = -12.0f;  // erf/tanh saturate to -1: a (signed) zero
    std::vector<double> expected(n);
    for (int64_t i = 0; i < n; ++i) expected[i] = c.exact(gate[i]) * up[i];
    std::vector<float> out(n, std::numeric_limits<float>::quiet_NaN());
    GatedActivationRef(c.act, gate.data(), up.data(), out.data(), n);
    EXPECT_EQ(CompareClose(expected, out, c.atol, c.rtol), "");

    GatedActivationRef(c.act, gate.data(), up.data(), gate.data(), n);  // in place over gate
    EXPECT_EQ(std::memcmp(gate.data(), out.data(), n * sizeof(float)), 0);
  }
}

TEST(GatedActivation, ActivationsDiffer) {
  // At g = 1 the three differ well beyond rounding: a model run with the wrong one is visible.
  const float g = 1.0f, u = 1.0f;
  float silu, tanh_gelu, gelu;
  GatedActivationRef(GateActivation::kSilu, &g, &u, &silu, 1);
  GatedActivationRef(GateActivation::kGeluTanh, &g, &u, &tanh_gelu, 1);
  GatedActivationRef(GateActivation::kGelu, &g, &u, &gelu, 1);
  EXPECT_NEAR(silu, 0.7310586, 1e-6);
  EXPECT_NEAR(tanh_gelu, 0.8411920, 1e-6);
  EXPECT_NEAR(gelu, 0.8413447, 1e-6);
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

// Gemma's final_logit_softcapping: logits of any size end up inside (-cap, cap), small ones
// barely move, and the order of distinct values is kept.
TEST(Softcap, MatchesDoubleTanhAndBoundsTheLogits) {
  uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 40.0f);
  const float cap = 30.0f;
  std::vector<float> x(1000);
  for (auto& v : x) v = dist(rng);
  x[0] = 1e30f;
  x[1] = -1e30f;
  x[2] = 0.001f;
  std::vector<double> expected(x.size());
  for (size_t i = 0; i < x.size(); ++i) expected[i] = cap * std::tanh(double{x[i]} / cap);
  SoftcapRef(x.data(), static_cast<int64_t>(x.size()), cap);
  EXPECT_EQ(CompareClose(expected, x, 1e-5, 1e-6), "");
  for (float v : x) ASSERT_LE(std::fabs(v), cap);
  EXPECT_NEAR(x[2], 0.001f, 1e-9);
}

}  // namespace
}  // namespace df11
