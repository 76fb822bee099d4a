// SPDX-License-Identifier: Apache-2.0
// The CUDA ew4 kernels: Ew4GemvCuda bit-identical to Bf16GemvOrderedCuda on the same weights
// given raw (escapes, tails, k not a multiple of 16, bias, batch 1-8, all-escape matrices), equal
// to an FP64 GEMV within FP32 rounding, the same bits on every launch and inside a CUDA graph;
// Ew4DecodeRowsCuda bit-exact against the CPU decoder. Outputs are poisoned first. Skips when no
// CUDA device is present. Links no glog and no MPI (runs on bare GPU machines).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/cuda_check.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_device.h"
#include "kernels/ew4/ew4_gemv.h"
#include "tests/kernels/dfloat11/df11_test_util.h"
#include "tests/kernels/ew4/ew4_test_util.h"

namespace df11 {
namespace {

using testing::FirstMismatches;
using testing::FreshSeed;

template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(int64_t n) : n_(std::max<int64_t>(n, 1)) {
    DF11_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&p_), n_ * sizeof(T)));
    DF11_CUDA_CHECK(cudaMemset(p_, 0xFF, n_ * sizeof(T)));  // poison (NaN for floats)
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(static_cast<int64_t>(host.size())) {
    DF11_CUDA_CHECK(cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~DeviceArray() { DF11_CUDA_CHECK(cudaFree(p_)); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return p_; }
  std::vector<T> Host(int64_t n) const {
    std::vector<T> out(static_cast<size_t>(n));
    DF11_CUDA_CHECK(cudaMemcpy(out.data(), p_, n * sizeof(T), cudaMemcpyDeviceToHost));
    return out;
  }

 private:
  int64_t n_;
  T* p_ = nullptr;
};

bool HasDevice() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

struct Problem {
  int64_t n, k;
  std::vector<uint16_t> w, bias;
  std::vector<float> x;
  Ew4Encoded ew4;
};

// N(0, 0.02) weights with ~1 % far outside their exponents (escapes), activations N(0, 1).
Problem MakeProblem(int64_t n, int64_t k, uint64_t seed, int32_t window_start = -1) {
  Problem p{n, k, testing::NormalBf16(n * k, 0.02, seed), testing::NormalBf16(n, 0.1, seed + 1),
            {}, {}};
  std::mt19937_64 rng(seed + 2);
  for (auto& v : p.w) {
    if (rng() % 100 == 0) v = FloatToBf16(std::ldexp(1.0f, 12 + static_cast<int>(rng() % 8)));
  }
  std::normal_distribution<float> d(0.0f, 1.0f);
  p.x.resize(static_cast<size_t>(kEw4GemvMaxBatch * k));
  for (auto& v : p.x) v = d(rng);
  EXPECT_EQ(Ew4EncodeRef(p.w.data(), n, k, 2, &p.ew4, window_start), "");
  return p;
}

TEST(Ew4GemvCuda, MatchesTheSameKernelOnRawWeightsBitForBit) {
  if (!HasDevice()) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (auto [n, k] : {std::pair<int64_t, int64_t>{37, 256}, {9, 64}, {20, 333}, {5, 40},
                      {300, 4096}, {64, 1000}, {1030, 2056}}) {
    Problem p = MakeProblem(n, k, seed + n * k);
    Ew4DeviceBuffer ew4(p.ew4.View());
    DeviceArray<uint16_t> w(p.w), bias(p.bias);
    DeviceArray<float> x(p.x);
    DeviceArray<float> ws(Ew4GemvWorkspaceFloats(kEw4GemvMaxBatch, n, k));
    for (int64_t m = 1; m <= kEw4GemvMaxBatch; ++m) {
      for (const uint16_t* b : {static_cast<const uint16_t*>(nullptr),
                                static_cast<const uint16_t*>(bias.get())}) {
        SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(k) + ", batch " +
                     std::to_string(m) + (b ? ", bias" : ""));
        DeviceArray<float> want(m * n), got(m * n);
        Bf16GemvOrderedCuda(x.get(), w.get(), b, want.get(), m, n, k, ws.get(), nullptr);
        Ew4GemvCuda(x.get(), ew4.view(), b, got.get(), m, ws.get(), nullptr);
        const std::vector<float> expected = want.Host(m * n), actual = got.Host(m * n);
        ASSERT_EQ(FirstMismatches(expected, actual), "");
        for (int64_t r = 0; r < m; ++r) {
          for (int64_t j = 0; j < n; ++j) {
            double exact = b ? Bf16ToFloat(p.bias[j]) : 0.0, magnitude = 0;
            for (int64_t i = 0; i < k; ++i) {
              const double t = static_cast<double>(Bf16ToFloat(p.w[j * k + i])) * p.x[r * k + i];
              exact += t;
              magnitude += std::fabs(t);
            }
            ASSERT_NEAR(actual[r * n + j], exact, 1e-6 * magnitude + 1e-30) << "row " << j;
          }
        }
      }
    }
  }
}

TEST(Ew4GemvCuda, AllEscapeWeightsAreExactToo) {
  if (!HasDevice()) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  Problem p = MakeProblem(12, 200, seed, /*window_start=*/200);
  ASSERT_EQ(p.ew4.n_escapes(), 12 * 200);
  Ew4DeviceBuffer ew4(p.ew4.View());
  DeviceArray<uint16_t> w(p.w);
  DeviceArray<float> x(p.x), ws(Ew4GemvWorkspaceFloats(8, 12, 200)), want(8 * 12), got(8 * 12);
  Bf16GemvOrderedCuda(x.get(), w.get(), nullptr, want.get(), 8, 12, 200, ws.get(), nullptr);
  Ew4GemvCuda(x.get(), ew4.view(), nullptr, got.get(), 8, ws.get(), nullptr);
  EXPECT_EQ(FirstMismatches(want.Host(96), got.Host(96)), "");
}

TEST(Ew4GemvCuda, SameBitsOnEveryLaunchAndInAGraph) {
  if (!HasDevice()) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t n = 4096, k = 4096, m = 4;
  Problem p = MakeProblem(n, k, seed);
  Ew4DeviceBuffer ew4(p.ew4.View());
  DeviceArray<float> x(p.x), ws(Ew4GemvWorkspaceFloats(m, n, k)), first(m * n), again(m * n);
  cudaStream_t stream;
  DF11_CUDA_CHECK(cudaStreamCreate(&stream));
  Ew4GemvCuda(x.get(), ew4.view(), nullptr, first.get(), m, ws.get(), stream);
  cudaGraph_t graph;
  DF11_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  Ew4GemvCuda(x.get(), ew4.view(), nullptr, again.get(), m, ws.get(), stream);
  DF11_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec;
  DF11_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) {
    DF11_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_EQ(FirstMismatches(first.Host(m * n), again.Host(m * n)), "") << "launch " << i;
  }
  DF11_CUDA_CHECK(cudaGraphExecDestroy(exec));
  DF11_CUDA_CHECK(cudaGraphDestroy(graph));
  DF11_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST(Ew4DecodeRowsCuda, MatchesTheCpuDecoderBitForBit) {
  if (!HasDevice()) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  struct Case {
    std::vector<uint16_t> words;
    int64_t rows, cols;
    int32_t window;
  };
  const Case cases[] = {{testing::NormalBf16(33 * 517, 0.02, seed), 33, 517, -1},
                        {testing::SkewedBf16(8 * 640, seed + 1), 8, 640, -1},
                        {testing::WideExponentBf16(16 * 300, seed + 2), 16, 300, -1},
                        {testing::NormalBf16(5 * 70, 0.02, seed + 3), 5, 70, 0}};
  for (const Case& c : cases) {
    Ew4Encoded e;
    ASSERT_EQ(Ew4EncodeRef(c.words.data(), c.rows, c.cols, 2, &e, c.window), "");
    Ew4DeviceBuffer d(e.View());
    for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, c.rows}, {1, c.rows - 1}, {2, 2}}) {
      DeviceArray<uint16_t> out((r1 - r0) * c.cols);
      Ew4DecodeRowsCuda(d.view(), r0, r1, out.get(), nullptr);
      const std::vector<uint16_t> want(c.words.begin() + r0 * c.cols, c.words.begin() + r1 * c.cols);
      EXPECT_EQ(FirstMismatches(want, out.Host((r1 - r0) * c.cols)), "")
          << c.rows << " x " << c.cols << " rows " << r0 << "-" << r1;
    }
  }
}

}  // namespace
}  // namespace df11
