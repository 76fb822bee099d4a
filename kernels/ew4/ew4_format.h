// SPDX-License-Identifier: Apache-2.0
// The ew4 weight layout: a lossless BF16 matrix (rows, cols) stored as a 4-bit exponent code per
// weight over a window of 15 consecutive exponents, the sign|mantissa byte of every weight, and
// the weights whose exponent falls outside the window (code 0, "escapes") as a per-row list of
// (column, BF16 value). Decoded weights are the original BF16 values bit for bit.
//   sign_mantissa (rows, cols): bit 7 the sign, bits 0-6 the mantissa, as DF11 stores them.
//   codes (rows, Ew4RowCodeBytes(cols)): per row, 32 bytes per block of 64 weights: byte j of a
//     block holds the code of weight j in its low nibble and of weight j + 32 in its high nibble
//     (a partial last block is padded with zero nibbles). Code c in 1..15 means exponent
//     window_start + c - 1; code 0 means "look the weight up in the escape list".
//   escape_offsets (rows + 1): row r's escapes are entries [offsets[r], offsets[r + 1]);
//   escape_columns, escape_values (n_escapes): increasing columns within a row, BF16 values.
// The block layout is what the fused kernels read: one 32-byte load gives 64 codes, whose low
// nibbles are weights 0-31 and high nibbles 32-63, both in order; the GPU kernel gives each lane
// 16 + 16 weights of a block with one 16-byte load of codes.
// The ew4 types (every header that declares one includes this one):
//   Ew4View (here): a validated view of the fields, owned elsewhere (a mapped file, an
//     Ew4Encoded, device memory); what the decoders and the fused GEMVs read.
//   Ew4Encoded (ew4_encode.h): owned, host: Ew4EncodeRef's output; View() for the kernels.
//   Ew4DeviceBuffer (ew4_device.h): owned, device-resident: the fields in one allocation.
#pragma once

#include <cstdint>

#include "kernels/common/host_device.h"

namespace df11 {

inline constexpr int kEw4BlockWeights = 64;    // weights per code block
inline constexpr int kEw4BlockCodeBytes = 32;  // code bytes per block
inline constexpr int kEw4WindowExponents = 15;  // codes 1..15
// The largest window_start: its code 15 is exponent 255.
inline constexpr int kEw4MaxWindowStart = 256 - kEw4WindowExponents;
// Matrices are limited so that escape offsets and columns fit 32 bits.
inline constexpr int64_t kEw4MaxCols = (int64_t{1} << 31) - 1;

struct Ew4View {
  int64_t rows = 0;
  int64_t cols = 0;
  int32_t window_start = 0;                  // exponent of code 1, in [0, kEw4MaxWindowStart]
  const uint8_t* sign_mantissa = nullptr;    // (rows, cols)
  const uint8_t* codes = nullptr;            // (rows, Ew4RowCodeBytes(cols))
  const uint32_t* escape_offsets = nullptr;  // (rows + 1)
  const uint32_t* escape_columns = nullptr;  // (n_escapes)
  const uint16_t* escape_values = nullptr;   // (n_escapes) BF16
  int64_t n_escapes = 0;
};

// Code bytes of one row: 32 per started block of 64 weights.
DF11_HD int64_t Ew4RowCodeBytes(int64_t cols) {
  return (cols + kEw4BlockWeights - 1) / kEw4BlockWeights * kEw4BlockCodeBytes;
}

// Bytes the fields of a (rows, cols) matrix with n_escapes escapes take (+ 4 for the window).
DF11_HD int64_t Ew4StoredBytes(int64_t rows, int64_t cols, int64_t n_escapes) {
  return rows * cols + rows * Ew4RowCodeBytes(cols) + 4 * (rows + 1) + 6 * n_escapes + 4;
}

// The code of weight `col` of a row whose codes start at `row_codes`.
DF11_HD uint32_t Ew4CodeAt(const uint8_t* row_codes, int64_t col) {
  const int64_t block = col / kEw4BlockWeights;
  const int within = static_cast<int>(col % kEw4BlockWeights);
  const uint32_t byte = row_codes[block * kEw4BlockCodeBytes + (within & 31)];
  return (within < 32 ? byte : byte >> 4) & 0xFu;
}

// The BF16 bit pattern of a covered weight (code 1..15) from its sign|mantissa byte.
DF11_HD uint16_t Ew4Combine(int32_t window_start, uint32_t code, uint32_t sign_mantissa) {
  const uint32_t exponent = static_cast<uint32_t>(window_start) + code - 1;
  return static_cast<uint16_t>(((sign_mantissa & 0x80u) << 8) | (exponent << 7) |
                               (sign_mantissa & 0x7Fu));
}

}  // namespace df11
