// SPDX-License-Identifier: Apache-2.0
// Df11DeviceBuffer: one DF11 unit copied to the device in a single allocation, laid out for
// Df11DecodeCuda: luts, encoded (zero-padded to whole blocks + 16 bytes), sign_mantissa,
// output_positions, gaps (+ 16 zero bytes), then the kernel's multi-code table (32 KB, derived
// from the unit's tables), each starting on a 256-byte boundary. Owns the
// host copy of output_positions the launcher reads. Not thread-safe; move-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/dfloat11/df11_decode.h"

namespace df11 {

class Df11DeviceBuffer {
 public:
  Df11DeviceBuffer() = default;
  // Copies `unit` (host pointers) to the current device; blocks until the copies are done.
  // Requires a unit that passes Df11ValidateUnit (checked: a violation is fatal).
  explicit Df11DeviceBuffer(const Df11UnitView& unit);
  ~Df11DeviceBuffer();
  Df11DeviceBuffer(Df11DeviceBuffer&& other) noexcept;
  Df11DeviceBuffer& operator=(Df11DeviceBuffer&& other) noexcept;
  Df11DeviceBuffer(const Df11DeviceBuffer&) = delete;
  Df11DeviceBuffer& operator=(const Df11DeviceBuffer&) = delete;

  // The unit as Df11DecodeCuda takes it; valid while this buffer lives.
  const Df11DeviceUnit& unit() const { return unit_; }
  // Bytes of the device allocation (fields, padding and alignment).
  size_t device_bytes() const { return bytes_; }

 private:
  void Release();

  uint8_t* device_ = nullptr;
  size_t bytes_ = 0;
  std::vector<uint8_t> host_positions_;  // (4 * n_output_positions) little-endian uint32
  Df11DeviceUnit unit_;
};

}  // namespace df11
