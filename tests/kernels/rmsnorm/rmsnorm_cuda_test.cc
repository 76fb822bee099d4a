// SPDX-License-Identifier: Apache-2.0
// RmsNormCuda against RmsNormRef over dims around the block size and input scales where eps
// matters and where it does not, out of place (poisoned output) and in place.
// Tolerance |gpu - ref| <= 1e-6 + 1e-5 * |ref|: the GPU sums squares in FP32 (at most
// dim / 256 + 8 sequential roundings, ~2.4e-6 relative at dim 8192, halved by the square root),
// the products round the same way on both sides. Skips without a CUDA device.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/rmsnorm/rmsnorm.h"
#include "tests/kernels/kernel_cuda_test_util.h"

namespace df11 {
namespace {

using kernel_testing::CompareClose;
using kernel_testing::CompareExact;
using kernel_testing::DeviceArray;
using kernel_testing::FreshSeed;
using kernel_testing::NormalFloats;

constexpr double kAtol = 1e-6;
constexpr double kRtol = 1e-5;

class RmsNormCudaTest : public kernel_testing::CudaKernelTest {};

TEST_F(RmsNormCudaTest, MatchesRef) {
  const float eps = 1e-6f;
  const int64_t rows = 37;
  for (int64_t dim : {1, 7, 255, 256, 257, 4096, 8192}) {
    for (float scale : {1e-4f, 1.0f, 300.0f}) {  // 1e-4: mean(x²) ~ 1e-8, eps dominates
      // Gemma's (1 + w), weights near 0, on the middle scale.
      const float offset = scale == 1.0f ? 1.0f : 0.0f;
      const uint64_t seed = FreshSeed();
      SCOPED_TRACE("dim " + std::to_string(dim) + " scale " + std::to_string(scale) +
                   " offset " + std::to_string(offset) + " seed " + std::to_string(seed));
      std::mt19937_64 rng(seed);
      const std::vector<float> x = NormalFloats(rows * dim, scale, rng);
      std::vector<uint16_t> w(dim);
      std::normal_distribution<float> wdist(1.0f - offset, 0.1f);
      for (uint16_t& v : w) v = FloatToBf16(wdist(rng));

      std::vector<float> expected(rows * dim);
      RmsNormRef(x.data(), w.data(), offset, eps, rows, dim, expected.data());
      DeviceArray<float> d_x(x);
      DeviceArray<uint16_t> d_w(w);
      DeviceArray<float> d_y(rows * dim);
      d_y.Poison();
      RmsNormCuda(d_x.get(), d_w.get(), offset, eps, rows, dim, d_y.get(), stream_);
      Sync();
      const std::vector<float> y = d_y.Download();
      EXPECT_EQ(CompareClose(expected, y, kAtol, kRtol), "");

      RmsNormCuda(d_x.get(), d_w.get(), offset, eps, rows, dim, d_x.get(), stream_);  // in place
      Sync();
      EXPECT_EQ(CompareExact(y, d_x.Download()), "") << "in place";
    }
  }
}

}  // namespace
}  // namespace df11
