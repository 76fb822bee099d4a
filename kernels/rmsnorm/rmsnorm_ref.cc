// SPDX-License-Identifier: Apache-2.0
// The mean of squares is summed in double (the oracle's accuracy should not depend on dim); the
// scale and the products are FP32, in HF's order: (x * rsqrt(var + eps)) then * (offset + w).
#include <cmath>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/rmsnorm/rmsnorm.h"

namespace df11 {

void RmsNormRef(const float* x, const uint16_t* weight, float weight_offset, float eps,
                int64_t rows, int64_t dim, float* y) {
  DF11_CHECK(rows >= 0 && dim >= 1);
  if (rows == 0) return;
  DF11_CHECK(x != nullptr && weight != nullptr && y != nullptr);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    double sum_sq = 0.0;
    for (int64_t j = 0; j < dim; ++j) sum_sq += static_cast<double>(xr[j]) * xr[j];
    const float variance = static_cast<float>(sum_sq / static_cast<double>(dim));
    const float inv_rms = 1.0f / std::sqrt(variance + eps);
    for (int64_t j = 0; j < dim; ++j) {
      yr[j] = (weight_offset + Bf16ToFloat(weight[j])) * (xr[j] * inv_rms);
    }
  }
}

}  // namespace df11
