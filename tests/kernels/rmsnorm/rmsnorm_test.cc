// SPDX-License-Identifier: Apache-2.0
// RmsNormRef against y = (offset + w) * x / sqrt(mean(x²) + eps) in double (offset 0, and
// Gemma's 1 with weights near 0), over input scales where eps matters and where it does not, and
// in place.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "tests/kernels/kernel_test_util.h"

namespace df11 {
namespace {

// Outputs are O(1) (normalized, weights ~1); FP32 rounding of the scale and two products.
constexpr double kAtol = 1e-6;
constexpr double kRtol = 1e-5;

TEST(RmsNorm, MatchesDoubleReference) {
  const float eps = 1e-5f;
  for (int64_t dim : {1, 7, 4096}) {
    for (float scale : {1e-4f, 1.0f, 300.0f}) {  // 1e-4: mean(x²) ~ 1e-8, eps dominates
     for (float offset : {0.0f, 1.0f}) {
      uint64_t seed = FreshSeed();
      SCOPED_TRACE("dim " + std::to_string(dim) + " scale " + std::to_string(scale) +
                   " offset " + std::to_string(offset) + " seed " + std::to_string(seed));
      std::mt19937_64 rng(seed);
      std::normal_distribution<float> dist(0.0f, 1.0f);
      const int64_t rows = 5;
      std::vector<float> x(rows * dim);
      for (auto& v : x) v = dist(rng) * scale;
      std::vector<uint16_t> w(dim);
      // Gemma stores w around 0 and multiplies by 1 + w.
      for (auto& v : w) v = FloatToBf16(1.0f - offset + 0.1f * dist(rng));

      std::vector<double> expected(rows * dim);
      for (int64_t r = 0; r < rows; ++r) {
        double sum_sq = 0;
        for (int64_t j = 0; j < dim; ++j) sum_sq += double{x[r * dim + j]} * x[r * dim + j];
        const double inv_rms = 1.0 / std::sqrt(sum_sq / dim + eps);
        for (int64_t j = 0; j < dim; ++j) {
          expected[r * dim + j] = (offset + double{Bf16ToFloat(w[j])}) * x[r * dim + j] * inv_rms;
        }
      }
      std::vector<float> y(rows * dim, std::numeric_limits<float>::quiet_NaN());
      RmsNormRef(x.data(), w.data(), offset, eps, rows, dim, y.data());
      EXPECT_EQ(CompareClose(expected, y, kAtol, kRtol), "");

      RmsNormRef(x.data(), w.data(), offset, eps, rows, dim, x.data());  // in place
      EXPECT_EQ(std::memcmp(x.data(), y.data(), y.size() * sizeof(float)), 0) << "in place";
     }
    }
  }
}

}  // namespace
}  // namespace df11
