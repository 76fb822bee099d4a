// SPDX-License-Identifier: Apache-2.0
// RopeCuda against RopeRef: default, llama3-, linear- and yarn-scaled frequencies (yarn also
// scales cos and sin), positions up to 128K (large angles), head_dim 2 and odd numbers of pairs,
// several heads. Both sides compute the same FP32 angle and rotate without fused multiply-adds;
// only cos/sin differ (CUDA sincosf <= 2 ulp, glibc <= 1 ulp), so per output |gpu - ref| <=
// 1e-6 * s * (|x1| + |x2|) + 2^-22 * |ref| where (x1, x2) is the input pair it came from and s the
// attention scaling (~3x the 3-ulp bound plus one rounding of the result).
// Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/rope/rope.h"
#include "tests/kernels/kernel_cuda_test_util.h"

namespace df11 {
namespace {

using kernel_testing::CompareWithin;
using kernel_testing::DeviceArray;
using kernel_testing::FreshSeed;
using kernel_testing::NormalFloats;

class RopeCudaTest : public kernel_testing::CudaKernelTest {};

TEST_F(RopeCudaTest, MatchesRef) {
  struct Case {
    int64_t tokens, heads, head_dim;
    const char* scaling;
  };
  for (const Case& c :
       {Case{1, 1, 2, ""}, Case{5, 3, 6, ""}, Case{40, 8, 64, "llama3"}, Case{17, 4, 128, ""},
        Case{3, 2, 256, "linear"}, Case{33, 4, 128, "yarn"}}) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE("tokens " + std::to_string(c.tokens) + " heads " + std::to_string(c.heads) +
                 " head_dim " + std::to_string(c.head_dim) + " scaling '" + c.scaling + "' seed " +
                 std::to_string(seed));
    std::mt19937_64 rng(seed);
    RopeParams params;
    params.head_dim = c.head_dim;
    params.theta = 1e6;
    params.scaling_type = c.scaling;
    params.factor = 8.0;
    params.original_max_position_embeddings = 8192;
    const std::vector<float> inv_freq = RopeInvFreq(params);
    const float scaling = RopeAttentionScaling(params);  // yarn: 1.208
    std::vector<int32_t> positions(c.tokens);
    std::uniform_int_distribution<int32_t> pos_dist(0, 131071);
    for (int32_t& p : positions) p = pos_dist(rng);
    positions[0] = 0;  // the identity rotation
    const std::vector<float> x = NormalFloats(c.tokens * c.heads * c.head_dim, 1.0f, rng);

    std::vector<float> expected = x;
    RopeRef(expected.data(), c.tokens, c.heads, c.head_dim, positions.data(), inv_freq.data(),
            scaling);
    const int64_t half = c.head_dim / 2;
    std::vector<double> tol(x.size());
    for (size_t e = 0; e < x.size(); ++e) {
      const int64_t d = static_cast<int64_t>(e) % c.head_dim;
      const size_t first = e - static_cast<size_t>(d) + static_cast<size_t>(d % half);
      tol[e] = 1e-6 * scaling * (std::abs(x[first]) + std::abs(x[first + half])) +
               0x1p-22 * std::abs(expected[e]);
    }
    DeviceArray<float> d_x(x);
    DeviceArray<int32_t> d_positions(positions);
    DeviceArray<float> d_inv_freq(inv_freq);
    RopeCuda(d_x.get(), c.tokens, c.heads, c.head_dim, d_positions.get(), d_inv_freq.get(), scaling,
             stream_);
    Sync();
    EXPECT_EQ(CompareWithin(expected, d_x.Download(), tol), "");
  }
}

}  // namespace
}  // namespace df11
