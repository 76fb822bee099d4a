// SPDX-License-Identifier: Apache-2.0
// ArgmaxCuda against ArgmaxRef, exact: sizes around the block and warp widths up to a Qwen-sized
// vocab, many tied maxima (the lowest index must win across threads and warps), NaNs, all-NaN
// (0), all -inf (0), +inf, the maximum at either end. The device index is poisoned (-1) first.
// Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/sampling/sampling.h"
#include "tests/kernels/kernel_cuda_test_util.h"

namespace df11 {
namespace {

using kernel_testing::DeviceArray;
using kernel_testing::FreshSeed;
using kernel_testing::NormalFloats;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

class ArgmaxCudaTest : public kernel_testing::CudaKernelTest {
 protected:
  int32_t ArgmaxOnDevice(const std::vector<float>& logits) {
    DeviceArray<float> d_logits(logits);
    DeviceArray<int32_t> d_index(1);
    d_index.Poison();
    ArgmaxCuda(d_logits.get(), static_cast<int64_t>(logits.size()), d_index.get(), stream_);
    Sync();
    return d_index.Download()[0];
  }
  void ExpectMatchesRef(const std::vector<float>& logits, const std::string& what) {
    const int32_t expected = ArgmaxRef(logits.data(), static_cast<int64_t>(logits.size()));
    EXPECT_EQ(ArgmaxOnDevice(logits), expected) << what << ", n " << logits.size();
  }
};

TEST_F(ArgmaxCudaTest, RandomLogits) {
  for (int64_t n : {1, 2, 31, 32, 33, 1023, 1024, 1025, 5000, 151936}) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    ExpectMatchesRef(NormalFloats(n, 3.0f, rng), "normal");
  }
}

TEST_F(ArgmaxCudaTest, TiesGoToTheLowestIndex) {
  for (int64_t n : {2, 33, 1025, 151936}) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int> level(0, 3);  // about a quarter of the entries tie at 3
    std::vector<float> logits(n);
    for (float& v : logits) v = static_cast<float>(level(rng));
    ExpectMatchesRef(logits, "four levels");
    // A single tie at both ends and one in the middle, all else lower.
    std::vector<float> sparse(n, -1.0f);
    sparse[n - 1] = sparse[n / 2] = 5.0f;
    ExpectMatchesRef(sparse, "ties at the middle and the end");
    sparse[0] = 5.0f;
    ExpectMatchesRef(sparse, "ties including index 0");
    ExpectMatchesRef(std::vector<float>(n, -kInf), "all -inf");
  }
}

TEST_F(ArgmaxCudaTest, NaNsAndInfinities) {
  for (int64_t n : {1, 40, 151936}) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    std::vector<float> logits = NormalFloats(n, 1.0f, rng);
    std::bernoulli_distribution nan(0.3);
    for (float& v : logits) {
      if (nan(rng)) v = kNaN;
    }
    logits[0] = kNaN;  // a NaN first must not win
    ExpectMatchesRef(logits, "some NaN");
    ExpectMatchesRef(std::vector<float>(n, kNaN), "all NaN");
    logits[n - 1] = kInf;
    ExpectMatchesRef(logits, "+inf last");
  }
}

}  // namespace
}  // namespace df11
