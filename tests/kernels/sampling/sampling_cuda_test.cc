// SPDX-License-Identifier: Apache-2.0
// ArgmaxCuda against ArgmaxRef, exact: sizes around the block and warp widths up to a Qwen-sized
// vocab, many tied maxima (the lowest index must win across threads and warps), NaNs, all-NaN
// (0), all -inf (0), +inf, the maximum at either end. The device index is poisoned (-1) first.
// SampleCuda against SampleRef on the same draws: greedy and penalised greedy exactly, and
// sampled tokens with every filter (ties included) equal but for draws within rounding of a
// boundary; rows of one call are independent. Skips without a CUDA device.
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

// One SampleCuda call over rows; each row's expected token and draw flag come from SampleRef
// with a copy of the row's RNG state (the GPU gets that state's next uniform).
struct SampleCase {
  std::vector<float> logits;  // (vocab)
  SamplingParams params;
  std::vector<int32_t> history;
  uint64_t rng = 0;
};

class SampleCudaTest : public kernel_testing::CudaKernelTest {
 protected:
  // Returns (token, drew) per case from one batched call.
  std::vector<std::pair<int32_t, int32_t>> SampleOnDevice(const std::vector<SampleCase>& cases) {
    const int64_t rows = static_cast<int64_t>(cases.size());
    const int64_t vocab = static_cast<int64_t>(cases[0].logits.size());
    std::vector<float> logits;
    std::vector<int32_t> history;
    std::vector<SampleCudaRow> info(rows);
    for (int64_t r = 0; r < rows; ++r) {
      const SampleCase& c = cases[r];
      logits.insert(logits.end(), c.logits.begin(), c.logits.end());
      info[r].params = c.params;
      info[r].history_begin = static_cast<int64_t>(history.size());
      history.insert(history.end(), c.history.begin(), c.history.end());
      info[r].history_end = static_cast<int64_t>(history.size());
      uint64_t state = c.rng;
      info[r].uniform = SampleUniform(&state);
    }
    history.push_back(0);  // never empty
    DeviceArray<float> d_logits(logits);
    DeviceArray<int32_t> d_history(history), d_tokens(rows), d_drew(rows);
    DeviceArray<uint8_t> d_info(static_cast<int64_t>(rows * sizeof(SampleCudaRow)));
    DF11_CUDA_CHECK(cudaMemcpy(d_info.get(), info.data(), rows * sizeof(SampleCudaRow),
                               cudaMemcpyHostToDevice));
    DF11_CUDA_CHECK(cudaDeviceSynchronize());  // the copy lands before the sampler's stream runs
    DeviceArray<double> d_workspace(
        static_cast<int64_t>(SampleCudaWorkspaceBytes(rows, vocab) / sizeof(double)) + 1);
    d_tokens.Poison();
    d_drew.Poison();
    SampleCuda(d_logits.get(), rows, vocab, reinterpret_cast<const SampleCudaRow*>(d_info.get()),
               d_history.get(), d_workspace.get(), d_tokens.get(), d_drew.get(), stream_);
    Sync();
    const std::vector<int32_t> tokens = d_tokens.Download(), drew = d_drew.Download();
    std::vector<std::pair<int32_t, int32_t>> out;
    for (int64_t r = 0; r < rows; ++r) out.emplace_back(tokens[r], drew[r]);
    return out;
  }
  static std::pair<int32_t, int32_t> SampleOnHost(const SampleCase& c) {
    uint64_t state = c.rng;
    const int32_t token =
        SampleRef(c.logits.data(), static_cast<int64_t>(c.logits.size()), c.params,
                  c.history.data(), static_cast<int64_t>(c.history.size()), &state);
    return {token, state != c.rng ? 1 : 0};
  }
  // Every case on the device equals SampleRef, except at most `allowed` tokens (draws that sit
  // within rounding of a boundary); the draw flags always agree.
  void ExpectMatchesRef(const std::vector<SampleCase>& cases, int allowed, const std::string& what) {
    const auto device = SampleOnDevice(cases);
    int differ = 0;
    for (size_t r = 0; r < cases.size(); ++r) {
      const auto host = SampleOnHost(cases[r]);
      EXPECT_EQ(device[r].second, host.second) << what << " row " << r << ": draw flag";
      EXPECT_GE(device[r].first, 0) << what << " row " << r;
      EXPECT_LT(device[r].first, static_cast<int32_t>(cases[r].logits.size())) << what;
      differ += device[r].first != host.first;
    }
    EXPECT_LE(differ, allowed) << what << ": " << differ << " of " << cases.size() << " differ";
  }
};

TEST_F(SampleCudaTest, GreedyAndPenalisedGreedyAreExact) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<SampleCase> cases;
  for (int r = 0; r < 20; ++r) {
    SampleCase c;
    c.logits = NormalFloats(151936, 2.0f, rng);
    c.params.repetition_penalty = r % 2 == 0 ? 1.0f : 1.3f;
    for (int k = 0; k < 50; ++k) c.history.push_back(static_cast<int32_t>(rng() % 151936));
    // Penalise the argmax so the penalty decides the token.
    c.history.push_back(ArgmaxRef(c.logits.data(), 151936));
    c.history.push_back(c.history.back());  // repeated: penalised once
    c.rng = rng();
    cases.push_back(std::move(c));
  }
  ExpectMatchesRef(cases, 0, "greedy");
  for (const auto& [token, drew] : SampleOnDevice(cases)) EXPECT_EQ(drew, 0);
}

TEST_F(SampleCudaTest, SampledTokensMatchTheReference) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const SamplingParams settings[] = {
      {1.0f, 0, 1.0f, 0.0f, 1.0f},   {0.7f, 50, 1.0f, 0.0f, 1.0f},  {0.8f, 0, 0.9f, 0.0f, 1.0f},
      {1.2f, 0, 1.0f, 0.05f, 1.0f},  {0.6f, 40, 0.8f, 0.02f, 1.2f}, {1.0f, 1, 1.0f, 0.0f, 1.0f},
      {2.0f, 0, 0.5f, 0.0f, 1.0f},   {0.9f, 1000, 0.95f, 0.0f, 1.1f},
  };
  for (int64_t vocab : {7, 1000, 151936}) {
    std::vector<SampleCase> cases;
    for (const SamplingParams& p : settings) {
      for (int k = 0; k < 12; ++k) {
        SampleCase c;
        c.logits = NormalFloats(vocab, 3.0f, rng);
        c.params = p;
        for (int h = 0; h < 20; ++h) c.history.push_back(static_cast<int32_t>(rng() % vocab));
        c.rng = rng();
        cases.push_back(std::move(c));
      }
    }
    ExpectMatchesRef(cases, 1, "vocab " + std::to_string(vocab));
  }
}

TEST_F(SampleCudaTest, TiesNaNsAndInfinities) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<SampleCase> cases;
  for (int r = 0; r < 64; ++r) {
    SampleCase c;
    // Four levels: top-k, top-p and min-p boundaries fall inside runs of equal scores.
    c.logits.resize(2000);
    for (float& v : c.logits) v = static_cast<float>(rng() % 4);
    if (r % 4 == 1) c.logits[rng() % 2000] = kNaN;
    if (r % 4 == 2) c.logits[rng() % 2000] = -kInf;
    c.params = {1.0f, static_cast<int>(rng() % 600), 0.3f + 0.1f * (r % 7), 0.0f, 1.0f};
    if (r % 3 == 0) c.params.min_p = 0.3f;
    c.rng = rng();
    cases.push_back(std::move(c));
  }
  ExpectMatchesRef(cases, 1, "ties");
  // No finite maximum: the top token, no draw.
  SampleCase inf;
  inf.logits = std::vector<float>(100, 0.0f);
  inf.logits[37] = kInf;
  inf.params.temperature = 1.0f;
  inf.rng = 5;
  SampleCase none = inf;
  none.logits = std::vector<float>(100, -kInf);
  const auto device = SampleOnDevice({inf, none});
  EXPECT_EQ(device[0], std::make_pair(37, 0));
  EXPECT_EQ(device[1], SampleOnHost(none));
}

TEST_F(SampleCudaTest, RowsOfOneCallAreIndependent) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<SampleCase> cases;
  for (int r = 0; r < 9; ++r) {
    SampleCase c;
    c.logits = NormalFloats(5000, 2.0f, rng);
    c.params = {0.5f + 0.1f * r, r * 10, 1.0f - 0.05f * r, 0.0f, 1.0f + 0.05f * r};
    for (int h = 0; h < r * 7; ++h) c.history.push_back(static_cast<int32_t>(rng() % 5000));
    c.rng = rng();
    cases.push_back(std::move(c));
  }
  const auto together = SampleOnDevice(cases);
  for (size_t r = 0; r < cases.size(); ++r) {
    EXPECT_EQ(SampleOnDevice({cases[r]})[0], together[r]) << "row " << r;
    EXPECT_EQ(SampleOnDevice({cases[r]})[0], together[r]) << "row " << r << ", again";
  }
}

}  // namespace
}  // namespace df11
