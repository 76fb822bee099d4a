// SPDX-License-Identifier: Apache-2.0
// Ew4DeviceBuffer: one ew4 matrix copied to the device in a single allocation: sign_mantissa,
// codes, escape_offsets, escape_columns, escape_values, each starting on a 256-byte boundary, so
// the fused kernels' 16-byte code loads are aligned. Not thread-safe; move-only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/ew4/ew4_format.h"

namespace df11 {

class Ew4DeviceBuffer {
 public:
  Ew4DeviceBuffer() = default;
  // Copies `host` (a validated view, host pointers) to the current device; blocks until the
  // copies are done.
  explicit Ew4DeviceBuffer(const Ew4View& host);
  ~Ew4DeviceBuffer();
  Ew4DeviceBuffer(Ew4DeviceBuffer&& other) noexcept;
  Ew4DeviceBuffer& operator=(Ew4DeviceBuffer&& other) noexcept;
  Ew4DeviceBuffer(const Ew4DeviceBuffer&) = delete;
  Ew4DeviceBuffer& operator=(const Ew4DeviceBuffer&) = delete;

  // The matrix with device pointers, as Ew4GemvCuda and Ew4DecodeRowsCuda take it; valid while
  // this buffer lives.
  const Ew4View& view() const { return view_; }
  // Bytes of the device allocation (fields and alignment).
  size_t device_bytes() const { return bytes_; }

 private:
  void Release();

  uint8_t* device_ = nullptr;
  size_t bytes_ = 0;
  Ew4View view_;
};

}  // namespace df11
