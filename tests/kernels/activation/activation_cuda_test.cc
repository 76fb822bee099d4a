// SPDX-License-Identifier: Apache-2.0
// GatedActivationCuda (silu, gelu_pytorch_tanh, gelu), AddCuda and SoftcapCuda against their
// references, with
// sizes past one grid of the grid-stride loop, in place, and the extremes (large |g|, where exp
// overflows: -0 not NaN; tanh/erf saturate). Tolerance |gpu - ref| <= atol + 1e-6 * |ref|: CUDA
// expf/tanhf/erff (<= 2 ulp) against glibc (<= 1 ulp), then a few adds and multiplies rounded
// alike (<= ~5 ulp = 6e-7 relative); silu's atol covers results that underflow near the exp
// overflow threshold, GELU's (1e-6) the cancellation in 1 + erf / 1 + tanh for negative g.
// Add is bit-exact; the soft cap (|out| < cap = 30) within 2e-6 + 1e-6 relative. Skips without a
// CUDA device.
#include <gtest/gtest.h>

#include <iterator>
#include <random>
#include <vector>

#include "kernels/activation/activation.h"
#include "tests/kernels/kernel_cuda_test_util.h"

namespace df11 {
namespace {

using kernel_testing::CompareClose;
using kernel_testing::CompareExact;
using kernel_testing::DeviceArray;
using kernel_testing::FreshSeed;
using kernel_testing::NormalFloats;

constexpr double kRtol = 1e-6;
constexpr int64_t kSizes[] = {1, 1000, (1 << 20) + 3};  // the last needs several grid strides

struct Activation {
  GateActivation act;
  const char* name;
  double atol;
};
const Activation kActivations[] = {{GateActivation::kSilu, "silu", 1e-30},
                                   {GateActivation::kGeluTanh, "gelu_pytorch_tanh", 1e-6},
                                   {GateActivation::kGelu, "gelu", 1e-6}};

class ActivationCudaTest : public kernel_testing::CudaKernelTest {
 protected:
  void CheckGated(const Activation& a, int64_t n);
};

TEST_F(ActivationCudaTest, GatedActivationMatchesRef) {
  for (const Activation& a : kActivations) {
    for (int64_t n : kSizes) CheckGated(a, n);
  }
}

void ActivationCudaTest::CheckGated(const Activation& a, int64_t n) {
  const uint64_t seed = FreshSeed();
  SCOPED_TRACE(std::string(a.name) + " n " + std::to_string(n) + " seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  std::vector<float> gate = NormalFloats(n, 4.0f, rng);
  const std::vector<float> up = NormalFloats(n, 1.0f, rng);
  const float extremes[] = {-1000.0f, -100.0f, -88.0f, -87.0f, 0.0f, -0.0f, 88.0f, 1000.0f};
  for (size_t i = 0; i < std::size(extremes) && i < gate.size(); ++i) gate[i] = extremes[i];

  std::vector<float> expected(n);
  GatedActivationRef(a.act, gate.data(), up.data(), expected.data(), n);
  DeviceArray<float> d_gate(gate);
  DeviceArray<float> d_up(up);
  DeviceArray<float> d_out(n);
  d_out.Poison();
  GatedActivationCuda(a.act, d_gate.get(), d_up.get(), d_out.get(), n, stream_);
  Sync();
  const std::vector<float> out = d_out.Download();
  EXPECT_EQ(CompareClose(expected, out, a.atol, kRtol), "");

  GatedActivationCuda(a.act, d_gate.get(), d_up.get(), d_gate.get(), n, stream_);  // out == gate
  GatedActivationCuda(a.act, d_up.get(), d_up.get(), d_up.get(), n, stream_);      // all three
  Sync();
  EXPECT_EQ(CompareExact(out, d_gate.Download()), "") << "in place over gate";
  std::vector<float> squared(n);
  GatedActivationRef(a.act, up.data(), up.data(), squared.data(), n);
  EXPECT_EQ(CompareClose(squared, d_up.Download(), a.atol, kRtol), "")
      << "in place over gate and up";
}

TEST_F(ActivationCudaTest, AddMatchesRefBitExact) {
  for (int64_t n : kSizes) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE("n " + std::to_string(n) + " seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    const std::vector<float> x = NormalFloats(n, 10.0f, rng);
    const std::vector<float> y = NormalFloats(n, 1.0f, rng);
    std::vector<float> expected = x;
    AddRef(expected.data(), y.data(), n);
    DeviceArray<float> d_x(x);
    DeviceArray<float> d_y(y);
    AddCuda(d_x.get(), d_y.get(), n, stream_);
    Sync();
    EXPECT_EQ(CompareExact(expected, d_x.Download()), "");
  }
}

TEST_F(ActivationCudaTest, SoftcapMatchesRef) {
  for (int64_t n : kSizes) {
    const uint64_t seed = FreshSeed();
    SCOPED_TRACE("n " + std::to_string(n) + " seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    std::vector<float> x = NormalFloats(n, 40.0f, rng);
    x[0] = 1e30f;
    std::vector<float> expected = x;
    SoftcapRef(expected.data(), n, 30.0f);
    DeviceArray<float> d_x(x);
    SoftcapCuda(d_x.get(), n, 30.0f, stream_);
    Sync();
    EXPECT_EQ(CompareClose(expected, d_x.Download(), 2e-6, kRtol), "");
  }
}

}  // namespace
}  // namespace df11
