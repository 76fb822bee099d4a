// SPDX-License-Identifier: Apache-2.0
// The end of the CPU fused GEMV's summation order (ew4_gemv.h), shared by the oracle and the
// vector paths: the 16 partial sums added pairwise, then the bias.
#pragma once

#include <cstdint>

#include "kernels/common/bf16.h"
#include "kernels/ew4/ew4_gemv.h"

namespace df11 {

inline float Ew4GemvFinish(float (&acc)[kEw4GemvLanes], const uint16_t* bias, int64_t row) {
  for (int width = kEw4GemvLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  }
  return bias != nullptr ? acc[0] + Bf16ToFloat(bias[row]) : acc[0];
}

}  // namespace df11
