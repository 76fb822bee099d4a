// SPDX-License-Identifier: Apache-2.0
// The 16-lane order of gemm.h written out in plain C++: the oracle the vector kernels match bit
// for bit, and the scalar level of GemmBf16Cpu.
#include <cmath>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/gemm_rows.h"

namespace df11 {
namespace gemm_internal {
namespace {

constexpr int kLanes = 16;

float DotInLaneOrder(const float* x, const uint16_t* w, int64_t k) {
  float s[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) s[l] = std::fma(x[i + l], Bf16ToFloat(w[i + l]), s[l]);
  }
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) s[l] += s[l + width];
  }
  float sum = s[0];
  for (; i < k; ++i) sum = std::fma(x[i], Bf16ToFloat(w[i]), sum);
  return sum;
}

}  // namespace

void GemmTileScalar(const GemmProblem& p, int64_t x_begin, int64_t x_end, int64_t w_begin,
                    int64_t w_end) {
  for (int64_t r = x_begin; r < x_end; ++r) {
    for (int64_t j = w_begin; j < w_end; ++j) {
      float v = DotInLaneOrder(p.x + r * p.k, p.w + j * p.k, p.k);
      if (p.bias != nullptr) v += Bf16ToFloat(p.bias[j]);
      p.y[r * p.n + j] = v;
    }
  }
}

}  // namespace gemm_internal

void GemmBf16Ref(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t m,
                 int64_t n, int64_t k, int threads) {
  DF11_CHECK(m >= 1 && n >= 1 && k >= 1);
  DF11_CHECK(x != nullptr && w != nullptr && y != nullptr);
  const gemm_internal::GemmProblem p{x, w, bias, y, m, n, k};
  ParallelFor(n, threads, 16, [&p](int64_t begin, int64_t end) {
    gemm_internal::GemmTileScalar(p, 0, p.m, begin, end);
  });
}

}  // namespace df11
