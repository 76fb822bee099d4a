// SPDX-License-Identifier: Apache-2.0
// BF16 stored as uint16_t bit patterns: conversions to and from float (round to nearest even,
// NaN kept quiet), shared by host and device code.
#pragma once

#include <cstdint>
#include <cstring>

#include "kernels/common/host_device.h"

namespace df11 {

DF11_HD float Bf16ToFloat(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

DF11_HD uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu) != 0) {
    return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN
  }
  uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

}  // namespace df11
