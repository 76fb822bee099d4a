// SPDX-License-Identifier: Apache-2.0
// silu(g) = g / (1 + exp(-g)), as torch's CPU kernel: large negative g gives exp(-g) = inf and
// a signed zero, never NaN.
#include <cmath>

#include "kernels/activation/activation.h"
#include "kernels/common/check.h"

namespace df11 {

void SwiGluRef(const float* gate, const float* up, float* out, int64_t n) {
  DF11_CHECK(n >= 0);
  if (n == 0) return;
  DF11_CHECK(gate != nullptr && up != nullptr && out != nullptr);
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void AddRef(float* x, const float* y, int64_t n) {
  DF11_CHECK(n >= 0);
  if (n == 0) return;
  DF11_CHECK(x != nullptr && y != nullptr);
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

}  // namespace df11
