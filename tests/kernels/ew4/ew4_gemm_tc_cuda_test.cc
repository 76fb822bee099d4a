// SPDX-License-Identifier: Apache-2.0
// The CUDA tensor-core decode-GEMM (ew4_gemm_tc.h): every A fragment the kernel decodes equals
// the CPU reference's (and the raw kernel's) bit for bit; Ew4GemmTcCuda's outputs are
// bit-identical to the same kernel fed raw BF16 tiles (Bf16GemmTcCuda) for batches 1-256, odd
// shapes, bias, escape-heavy matrices, one or several k slices; they agree with the CPU
// reference within the rounding a k16 step may do differently, and with cuBLAS BF16 within
// FP32 summation-order rounding; a token's outputs do not depend on the batch around it; the
// same bits on every launch and inside a CUDA graph. Outputs are poisoned first. Skips when no
// CUDA device is present. Links no glog and no MPI.
#include <cuda_runtime_api.h>
#include <cublas_v2.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/cublas_check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_device.h"
#include "kernels/ew4/ew4_gemm_tc.h"
#include "kernels/gemm/gemm.h"
#include "tests/kernels/dfloat11/df11_test_util.h"
#include "tests/kernels/ew4/ew4_test_util.h"
#include "tests/kernels/kernel_cuda_test_util.h"

namespace df11 {
namespace {

using kernel_testing::DeviceArray;
using testing::FirstMismatches;
using testing::FreshSeed;

bool HasDevice() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

struct Problem {
  int64_t n, k;
  std::vector<uint16_t> w, bias;
  std::vector<float> x;  // (kEw4TcMaxBatch, k)
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
  p.x.resize(static_cast<size_t>(kEw4TcMaxBatch * k));
  for (auto& v : p.x) v = d(rng);
  EXPECT_EQ(Ew4EncodeRef(p.w.data(), n, k, 2, &p.ew4, window_start), "");
  return p;
}

std::vector<float> Download(const DeviceArray<float>& a, int64_t count) {
  std::vector<float> out(static_cast<size_t>(count));
  DF11_CUDA_CHECK(cudaMemcpy(out.data(), a.get(), count * 4, cudaMemcpyDeviceToHost));
  return out;
}

// Per output: sum over k of |x w| in double (x rounded to BF16 as the kernels round it), + |bias|.
std::vector<double> Magnitudes(const Problem& p, int64_t m, bool bias) {
  std::vector<double> out(static_cast<size_t>(m * p.n));
  for (int64_t b = 0; b < m; ++b) {
    for (int64_t j = 0; j < p.n; ++j) {
      double s = bias ? std::fabs(Bf16ToFloat(p.bias[j])) : 0.0;
      for (int64_t i = 0; i < p.k; ++i) {
        s += std::fabs(static_cast<double>(Bf16ToFloat(p.w[j * p.k + i])) *
                       Bf16ToFloat(FloatToBf16(p.x[b * p.k + i])));
      }
      out[b * p.n + j] = s;
    }
  }
  return out;
}

const std::pair<int64_t, int64_t> kShapes[] = {{37, 200}, {64, 64}, {130, 1000}, {5, 15},
                                               {300, 4096}, {40, 2056}, {1030, 520}};

TEST(Ew4GemmTcCuda, DecodedFragmentsMatchTheCpuReferenceBitForBit) {
  if (!HasDevice()) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (auto [n, k] : kShapes) {
    for (int32_t window : {-1, 200}) {
      SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(k) + " window " +
                   std::to_string(window));
      Problem p = MakeProblem(n, k, seed + n * k, window);
      Ew4DeviceBuffer ew4(p.ew4.View());
      DeviceArray<uint16_t> raw(p.w);
      const int64_t tiles = (n + 15) / 16, steps = Ew4TcFragmentSteps(k);
      const int64_t count = tiles * steps * 32 * kEw4TcFragWords;
      DeviceArray<uint16_t> got(count), got_raw(count);
      got.Poison();
      got_raw.Poison();
      Ew4TcFragmentsCuda(ew4.view(), got.get(), nullptr);
      Bf16TcFragmentsCuda(raw.get(), n, k, got_raw.get(), nullptr);
      DF11_CUDA_CHECK(cudaDeviceSynchronize());
      std::vector<uint16_t> want(static_cast<size_t>(count));
      for (int64_t t = 0; t < tiles; ++t) {
        for (int64_t s = 0; s < steps; ++s) {
          for (int lane = 0; lane < 32; ++lane) {
            uint16_t words[kEw4TcFragWords];
            Ew4TcFragmentRef(p.ew4.View(), 16 * t, 16 * s, lane, words);
            for (int e = 0; e < kEw4TcFragWords; ++e) {
              want[((t * steps + s) * 32 + lane) * kEw4TcFragWords + e] = words[e];
            }
          }
        }
      }
      EXPECT_EQ(FirstMismatches(want, got.Download()), "") << "ew4 tiles";
      EXPECT_EQ(FirstMismatches(want, got_raw.Download()), "") << "raw BF16 tiles";
    }
  }
}

TEST(Ew4GemmTcCuda, MatchesTheSameKernelOnRawWeightsBitForBit) {
  if (!HasDevice()) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (auto [n, k] : kShapes) {
    Problem p = MakeProblem(n, k, seed + 3 * n + k);
    Ew4DeviceBuffer ew4(p.ew4.View());
    DeviceArray<uint16_t> w(p.w), bias(p.bias), xb(kEw4TcMaxBatch * k);
    DeviceArray<float> x(p.x), ws(Ew4GemmTcWorkspaceFloats(kEw4TcMaxBatch, n, k));
    for (int64_t m : {1, 7, 8, 9, 16, 31, 33, 64, 100, 128, 129, 200, 255, 256}) {
      for (const uint16_t* b : {static_cast<const uint16_t*>(nullptr),
                                static_cast<const uint16_t*>(bias.get())}) {
        SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(k) + ", batch " +
                     std::to_string(m) + (b ? ", bias" : ""));
        DeviceArray<float> want(m * n), got(m * n);
        want.Poison();
        got.Poison();
        Bf16GemmTcCuda(x.get(), w.get(), b, want.get(), m, n, k, xb.get(), ws.get(), nullptr);
        Ew4GemmTcCuda(x.get(), ew4.view(), b, got.get(), m, xb.get(), ws.get(), nullptr);
        const std::vector<float> expected = Download(want, m * n), actual = Download(got, m * n);
        ASSERT_EQ(FirstMismatches(expected, actual), "");
        if (b == nullptr || (m != 9 && m != 100 && m != 256)) continue;
        // Against the CPU reference: the same order but a k16 step's own rounding (ew4_gemm_tc.h).
        std::vector<float> cpu(static_cast<size_t>(m * n));
        Ew4GemmTcRef(p.x.data(), p.ew4.View(), b ? p.bias.data() : nullptr, cpu.data(), m, 4);
        const std::vector<double> magnitude = Magnitudes(p, m, b != nullptr);
        const double roundings = static_cast<double>(k / 16 + Ew4GemmTcSplits(n, k) + 2);
        for (size_t i = 0; i < cpu.size(); ++i) {
          ASSERT_NEAR(actual[i], cpu[i], roundings * std::ldexp(magnitude[i], -21) + 1e-30)
              << "output " << i;
        }
      }
    }
  }
}

TEST(Ew4GemmTcCuda, AllEscapeWeightsAreExactToo) {
  if (!HasDevice()) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t n = 20, k = 300, m = 70;
  Problem p = MakeProblem(n, k, seed, /*window_start=*/200);
  ASSERT_EQ(p.ew4.n_escapes(), n * k);
  Ew4DeviceBuffer ew4(p.ew4.View());
  DeviceArray<uint16_t> w(p.w), xb(m * k);
  DeviceArray<float> x(p.x), ws(Ew4GemmTcWorkspaceFloats(m, n, k)), want(m * n), got(m * n);
  want.Poison();
  got.Poison();
  Bf16GemmTcCuda(x.get(), w.get(), nullptr, want.get(), m, n, k, xb.get(), ws.get(), nullptr);
  Ew4GemmTcCuda(x.get(), ew4.view(), nullptr, got.get(), m, xb.get(), ws.get(), nullptr);
  EXPECT_EQ(FirstMismatches(Download(want, m * n), Download(got, m * n)), "");
}

TEST(Ew4GemmTcCuda, CloseToCublasBf16) {
  if (!HasDevice()) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  cublasHandle_t cublas;
  DF11_CUBLAS_CHECK(cublasCreate(&cublas));
  for (auto [n, k] : {std::pair<int64_t, int64_t>{512, 4096}, {130, 1000}, {1030, 520}}) {
    Problem p = MakeProblem(n, k, seed + n);
    Ew4DeviceBuffer ew4(p.ew4.View());
    DeviceArray<uint16_t> w(p.w), bias(p.bias), xb(kEw4TcMaxBatch * k);
    DeviceArray<float> x(p.x), ws(Ew4GemmTcWorkspaceFloats(kEw4TcMaxBatch, n, k));
    for (int64_t m : {16, 64, 256}) {
      SCOPED_TRACE(std::to_string(n) + " x " + std::to_string(k) + ", batch " +
                   std::to_string(m));
      DeviceArray<float> want(m * n), got(m * n);
      want.Poison();
      got.Poison();
      GemmBf16Cuda(x.get(), w.get(), bias.get(), want.get(), m, n, k, xb.get(), cublas, nullptr);
      Ew4GemmTcCuda(x.get(), ew4.view(), bias.get(), got.get(), m, xb.get(), ws.get(), nullptr);
      const std::vector<float> expected = Download(want, m * n), actual = Download(got, m * n);
      const std::vector<double> magnitude = Magnitudes(p, m, true);
      for (size_t i = 0; i < expected.size(); ++i) {
        // Both multiply the same BF16 values with FP32 sums; only the order differs.
        ASSERT_NEAR(actual[i], expected[i], k * std::ldexp(magnitude[i], -22) + 1e-30)
            << "output " << i;
      }
    }
  }
  DF11_CUBLAS_CHECK(cublasDestroy(cublas));
}

TEST(Ew4GemmTcCuda, TokenOutputsDoNotDependOnTheBatch) {
  if (!HasDevice()) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t n = 300, k = 1000;  // several k slices
  Problem p = MakeProblem(n, k, seed);
  ASSERT_GT(Ew4GemmTcSplits(n, k), 1);
  Ew4DeviceBuffer ew4(p.ew4.View());
  DeviceArray<uint16_t> bias(p.bias), xb(kEw4TcMaxBatch * k);
  DeviceArray<float> x(p.x), ws(Ew4GemmTcWorkspaceFloats(kEw4TcMaxBatch, n, k));
  DeviceArray<float> all(kEw4TcMaxBatch * n);
  all.Poison();
  Ew4GemmTcCuda(x.get(), ew4.view(), bias.get(), all.get(), kEw4TcMaxBatch, xb.get(), ws.get(),
                nullptr);
  const std::vector<float> whole = Download(all, kEw4TcMaxBatch * n);
  for (int64_t m : {1, 5, 20, 37, 100, 160}) {  // every n-tile class of the kernel
    DeviceArray<float> part(m * n);
    part.Poison();
    Ew4GemmTcCuda(x.get(), ew4.view(), bias.get(), part.get(), m, xb.get(), ws.get(), nullptr);
    EXPECT_EQ(FirstMismatches(std::vector<float>(whole.begin(), whole.begin() + m * n),
                              Download(part, m * n)),
              "")
        << "batch " << m;
  }
}

TEST(Ew4GemmTcCuda, SameBitsOnEveryLaunchAndInAGraph) {
  if (!HasDevice()) GTEST_SKIP() << "no CUDA device";
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int64_t n = 4096, k = 4096, m = 64;
  Problem p = MakeProblem(n, k, seed);
  Ew4DeviceBuffer ew4(p.ew4.View());
  DeviceArray<uint16_t> xb(m * k);
  DeviceArray<float> x(p.x), ws(Ew4GemmTcWorkspaceFloats(m, n, k)), first(m * n), again(m * n);
  ASSERT_GT(Ew4GemmTcSplits(n, k), 1);
  cudaStream_t stream;
  DF11_CUDA_CHECK(cudaStreamCreate(&stream));
  Ew4GemmTcCuda(x.get(), ew4.view(), nullptr, first.get(), m, xb.get(), ws.get(), stream);
  cudaGraph_t graph;
  DF11_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  Ew4GemmTcCuda(x.get(), ew4.view(), nullptr, again.get(), m, xb.get(), ws.get(), stream);
  DF11_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  cudaGraphExec_t exec;
  DF11_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int i = 0; i < 3; ++i) {
    again.Poison();
    DF11_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    DF11_CUDA_CHECK(cudaStreamSynchronize(stream));
    EXPECT_EQ(FirstMismatches(Download(first, m * n), Download(again, m * n)), "")
        << "launch " << i;
  }
  DF11_CUDA_CHECK(cudaGraphExecDestroy(exec));
  DF11_CUDA_CHECK(cudaGraphDestroy(graph));
  DF11_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace df11
