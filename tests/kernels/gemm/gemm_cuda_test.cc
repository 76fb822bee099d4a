// SPDX-License-Identifier: Apache-2.0
// GemmBf16Cuda (cuBLAS, activations rounded to BF16, FP32 accumulation) against GemmBf16Ref.
// Exact: integer-valued w and bias with x in ±[256, 512) (BF16 spacing 2 there, so rounding x
// matters) keep every product and partial sum an integer below 2^23, so the GPU must equal, bit
// for bit, the CPU reference run on x rounded to BF16 first; the BF16 workspace must hold
// FloatToBf16(x) exactly. Random: per element, against the FP32 reference,
//   |gpu - ref| <= (2^-9 + 2 k 2^-23) * S + 2^-22 * |ref|,  S = sum_i |x_i w_i|
// (2^-9: BF16 rounding of x; k 2^-23 per side: worst-case FP32 accumulation, truncating tensor
// core adds included; 2^-22: the bias add), and the same without 2^-9 against the reference on
// BF16-rounded x. Outputs are poisoned (NaN) first. Skips without a CUDA device.
#include <cublas_v2.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/cublas_check.h"
#include "kernels/gemm/gemm.h"
#include "tests/kernels/kernel_cuda_test_util.h"

namespace df11 {
namespace {

using kernel_testing::CompareExact;
using kernel_testing::CompareWithin;
using kernel_testing::DeviceArray;
using kernel_testing::FreshSeed;
using kernel_testing::NormalFloats;

struct Shape {
  int64_t m, n, k;
};

std::string Describe(const Shape& s, bool bias, uint64_t seed) {
  return "m " + std::to_string(s.m) + " n " + std::to_string(s.n) + " k " + std::to_string(s.k) +
         (bias ? " bias" : " no bias") + " seed " + std::to_string(seed);
}

std::vector<float> RoundedToBf16(const std::vector<float>& x) {
  std::vector<float> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = Bf16ToFloat(FloatToBf16(x[i]));
  return r;
}

class GemmCudaTest : public kernel_testing::CudaKernelTest {
 protected:
  void SetUp() override {
    CudaKernelTest::SetUp();
    if (IsSkipped()) return;
    DF11_CUBLAS_CHECK(cublasCreate(&handle_));
  }
  void TearDown() override {
    if (handle_ != nullptr) DF11_CUBLAS_CHECK(cublasDestroy(handle_));
    CudaKernelTest::TearDown();
  }

  struct Result {
    std::vector<float> y;          // (m, n)
    std::vector<uint16_t> x_bf16;  // (m, k) workspace after the call
  };
  Result RunOnDevice(const std::vector<float>& x, const std::vector<uint16_t>& w,
                     const std::vector<uint16_t>& bias, const Shape& s) {
    DeviceArray<float> d_x(x);
    DeviceArray<uint16_t> d_w(w);
    DeviceArray<uint16_t> d_bias(bias);
    DeviceArray<float> d_y(s.m * s.n);
    DeviceArray<uint16_t> d_x_bf16(s.m * s.k);
    d_y.Poison();
    d_x_bf16.Poison();
    GemmBf16Cuda(d_x.get(), d_w.get(), bias.empty() ? nullptr : d_bias.get(), d_y.get(), s.m, s.n,
                 s.k, d_x_bf16.get(), handle_, stream_);
    Sync();
    return {d_y.Download(), d_x_bf16.Download()};
  }

  cublasHandle_t handle_ = nullptr;
};

TEST_F(GemmCudaTest, ExactOnIntegerProducts) {
  for (const Shape& s : {Shape{1, 1, 1}, Shape{3, 5, 7}, Shape{1, 300, 2048}, Shape{17, 130, 64},
                         Shape{64, 257, 1000}}) {
    for (bool with_bias : {false, true}) {
      const uint64_t seed = FreshSeed();
      SCOPED_TRACE(Describe(s, with_bias, seed));
      std::mt19937_64 rng(seed);
      std::uniform_real_distribution<float> magnitude(256.0f, 512.0f);
      std::bernoulli_distribution negative(0.5);
      std::uniform_int_distribution<int> small(-8, 8), bias_value(-64, 64);
      std::vector<float> x(s.m * s.k);
      for (float& v : x) v = negative(rng) ? -magnitude(rng) : magnitude(rng);
      std::vector<uint16_t> w(s.n * s.k), bias;
      for (uint16_t& v : w) v = FloatToBf16(static_cast<float>(small(rng)));
      if (with_bias) {
        bias.resize(s.n);
        for (uint16_t& v : bias) v = FloatToBf16(static_cast<float>(bias_value(rng)));
      }
      const std::vector<float> x_rounded = RoundedToBf16(x);
      std::vector<float> expected(s.m * s.n);
      GemmBf16Ref(x_rounded.data(), w.data(), with_bias ? bias.data() : nullptr, expected.data(),
                  s.m, s.n, s.k, 2);
      std::vector<uint16_t> expected_x_bf16(x.size());
      for (size_t i = 0; i < x.size(); ++i) expected_x_bf16[i] = FloatToBf16(x[i]);

      const Result r = RunOnDevice(x, w, bias, s);
      EXPECT_EQ(CompareExact(expected_x_bf16, r.x_bf16), "") << "x rounded to BF16";
      EXPECT_EQ(CompareExact(expected, r.y), "");
    }
  }
}

TEST_F(GemmCudaTest, RandomWithinDerivedBound) {
  for (const Shape& s : {Shape{1, 1000, 4096}, Shape{7, 257, 1536}, Shape{33, 128, 333}}) {
    for (float x_scale : {1.0f, 30.0f}) {
      const bool with_bias = x_scale == 1.0f;
      const uint64_t seed = FreshSeed();
      SCOPED_TRACE(Describe(s, with_bias, seed) + " x_scale " + std::to_string(x_scale));
      std::mt19937_64 rng(seed);
      const std::vector<float> x = NormalFloats(s.m * s.k, x_scale, rng);
      std::vector<uint16_t> w(s.n * s.k), bias;
      std::normal_distribution<float> w_dist(0.0f, 0.05f);
      for (uint16_t& v : w) v = FloatToBf16(w_dist(rng));
      if (with_bias) {
        bias.resize(s.n);
        for (uint16_t& v : bias) v = FloatToBf16(w_dist(rng));
      }
      const uint16_t* bias_ptr = with_bias ? bias.data() : nullptr;
      std::vector<float> ref(s.m * s.n), ref_rounded(s.m * s.n);
      GemmBf16Ref(x.data(), w.data(), bias_ptr, ref.data(), s.m, s.n, s.k, 2);
      const std::vector<float> x_rounded = RoundedToBf16(x);
      GemmBf16Ref(x_rounded.data(), w.data(), bias_ptr, ref_rounded.data(), s.m, s.n, s.k, 2);

      const double accumulation = 2.0 * static_cast<double>(s.k) * 0x1p-23;
      std::vector<double> tol(s.m * s.n), tol_rounded(s.m * s.n);
      for (int64_t r = 0; r < s.m; ++r) {
        for (int64_t j = 0; j < s.n; ++j) {
          double sum_abs = 0.0;  // S = sum_i |x_i w_i|
          for (int64_t i = 0; i < s.k; ++i) {
            sum_abs += std::abs(static_cast<double>(x[r * s.k + i]) * Bf16ToFloat(w[j * s.k + i]));
          }
          const int64_t e = r * s.n + j;
          tol[e] = (0x1p-9 + accumulation) * sum_abs + 0x1p-22 * std::abs(ref[e]);
          tol_rounded[e] =
              accumulation * sum_abs * (1.0 + 0x1p-8) + 0x1p-22 * std::abs(ref_rounded[e]);
        }
      }
      const Result result = RunOnDevice(x, w, bias, s);
      EXPECT_EQ(CompareWithin(ref, result.y, tol), "") << "against the FP32 reference";
      EXPECT_EQ(CompareWithin(ref_rounded, result.y, tol_rounded), "")
          << "against the reference on BF16-rounded x";
    }
  }
}

}  // namespace
}  // namespace df11
