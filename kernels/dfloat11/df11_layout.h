// SPDX-License-Identifier: Apache-2.0
// The DF11 unit layout (shared/specs/df11-format.md section 2): constants, a non-owning view of a
// unit's stored fields, and the small field accessors shared by the encoder, the CPU decoder and
// the CUDA kernel. Multi-byte fields are read with byte loads, so views may be unaligned (mmap).
#pragma once

#include <cstdint>

#include "kernels/common/host_device.h"

namespace df11 {

inline constexpr int kDf11ThreadsPerBlock = 512;  // windows per block (T)
inline constexpr int kDf11BytesPerThread = 8;     // bytes per window (B)
inline constexpr int64_t kDf11BlockBytes = kDf11ThreadsPerBlock * kDf11BytesPerThread;  // 4096
inline constexpr int64_t kDf11BlockBits = kDf11BlockBytes * 8;                           // 32768
inline constexpr int kDf11MaxCodeLength = 32;
inline constexpr int kDf11FirstPointer = 240;  // lut entries >= this continue in row 256 - v
inline constexpr int kDf11MaxSubTables = 16;   // rows reachable through pointers 255..240
inline constexpr int kDf11MaxLutRows = kDf11MaxSubTables + 2;  // + row 0 + the lengths row
inline constexpr int kDf11GapBits = 5;
// Units are limited to 2^31 - 1 elements (32-bit output positions, int-indexed kernels).
inline constexpr int64_t kDf11MaxElements = (int64_t{1} << 31) - 1;

// The DF11 unit types (every header that declares one includes this one):
//   Df11UnitView (here): a view of a unit's stored fields, owned elsewhere (a mapped file, an
//     encoder's buffers, device memory); what the decoders read.
//   Df11EncodedUnit (df11_encode.h): owned, host, encoded: Df11EncodeRef's output (the fields in
//     vectors, the code and histogram it chose); View() to decode, AddDf11UnitTensors to write.
//   Df11Unit (runtime/formats/df11_unit.h): loaded, host: a unit read from a checkpoint (its
//     name, a view into the mapping, where its matrices start, the CPU decoder's tables); it
//     stays compressed in memory.
//   Df11DeviceBuffer (df11_device_unit.h): owned, device-resident: one allocation holding a
//     unit's fields, padded for the kernel, and its multi-code table.
//   Df11DeviceUnit (df11_decode.h): the device view Df11DecodeCuda takes, borrowed from a
//     Df11DeviceBuffer (device pointers, a host copy of the positions for launch geometry).

// The stored fields of one unit. `output_positions` are little-endian uint32 values stored as
// bytes; `gaps` are 5-bit fields packed MSB-first.
struct Df11UnitView {
  const uint8_t* luts = nullptr;  // (n_luts, 256): lookup rows, then the code-length row
  int32_t n_luts = 0;
  const uint8_t* encoded = nullptr;  // (n_bytes): exponent codes, MSB-first
  int64_t n_bytes = 0;
  const uint8_t* sign_mantissa = nullptr;  // (n_elements)
  int64_t n_elements = 0;
  const uint8_t* output_positions = nullptr;  // (4 * n_output_positions) bytes
  int64_t n_output_positions = 0;
  const uint8_t* gaps = nullptr;  // (n_gap_bytes)
  int64_t n_gap_bytes = 0;
};

DF11_HD int64_t Df11BlockCount(int64_t n_bytes) {
  return (n_bytes + kDf11BlockBytes - 1) / kDf11BlockBytes;
}

DF11_HD uint32_t Df11LoadU32Le(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// Number of blocks that own elements: n_output_positions - 1.
DF11_HD int64_t Df11PositionBlocks(const Df11UnitView& unit) {
  return unit.n_output_positions - 1;
}

// output_positions[b], for b <= Df11PositionBlocks(unit).
DF11_HD int64_t Df11OutputPosition(const Df11UnitView& unit, int64_t b) {
  return Df11LoadU32Le(unit.output_positions + 4 * b);
}

// Gap of window `w` (bit offset of the first code starting in it); the caller checks that
// 5 * (w + 1) bits exist in `gaps`.
DF11_HD uint32_t Df11GapAt(const uint8_t* gaps, int64_t n_gap_bytes, int64_t w) {
  int64_t bit = w * kDf11GapBits;
  int64_t byte = bit >> 3;
  uint32_t hi = gaps[byte];
  uint32_t lo = byte + 1 < n_gap_bytes ? gaps[byte + 1] : 0u;
  uint32_t two = (hi << 8) | lo;
  return (two >> (11 - static_cast<int>(bit & 7))) & 31u;
}

// Rebuilds a BF16 bit pattern from its exponent and sign+mantissa byte.
DF11_HD uint16_t Df11Combine(uint32_t exponent, uint32_t sign_mantissa) {
  return static_cast<uint16_t>(((sign_mantissa & 0x80u) << 8) | (exponent << 7) |
                               (sign_mantissa & 0x7Fu));
}

// Walks the lookup rows for the code that starts at the top of `bits` (the next 32 stream bits,
// MSB first). Returns the symbol's code length (1..32) and sets *symbol, or 0 when the walk needs
// a fifth byte (a pointer cycle or a too-long code), or hits a symbol whose length is 0 or > 32.
// Pointer targets are assumed in range (checked once when the unit is validated).
DF11_HD int Df11WalkLuts(const uint8_t* luts, const uint8_t* lengths, uint32_t bits,
                         uint32_t* symbol) {
  uint32_t row = 0;
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int step = 0; step < 4; ++step) {
    uint32_t v = luts[row * 256 + ((bits >> (24 - 8 * step)) & 0xFFu)];
    if (v < static_cast<uint32_t>(kDf11FirstPointer)) {
      uint32_t len = lengths[v];
      *symbol = v;
      return (len >= 1 && len <= static_cast<uint32_t>(kDf11MaxCodeLength)) ? static_cast<int>(len)
                                                                            : 0;
    }
    row = 256 - v;
  }
  return 0;
}

}  // namespace df11
