// SPDX-License-Identifier: Apache-2.0
#include "kernels/ew4/ew4_decode.h"

#include "kernels/common/parallel_for.h"

namespace df11 {

std::string Ew4ValidateView(const Ew4View& v) {
  if (v.rows < 0 || v.cols < 0 || v.cols > kEw4MaxCols) {
    return "shape [" + std::to_string(v.rows) + ", " + std::to_string(v.cols) +
           "] is not a matrix ew4 stores (columns in [0, 2^31))";
  }
  if (v.window_start < 0 || v.window_start > kEw4MaxWindowStart) {
    return "window " + std::to_string(v.window_start) + " is outside [0, " +
           std::to_string(kEw4MaxWindowStart) + "]";
  }
  if (v.n_escapes < 0 || v.n_escapes > UINT32_MAX) {
    return "escape count " + std::to_string(v.n_escapes) + " is outside [0, 2^32)";
  }
  if (v.escape_offsets[0] != 0 || v.escape_offsets[v.rows] != v.n_escapes) {
    return "escape_offsets must start at 0 and end at the escape count " +
           std::to_string(v.n_escapes) + "; they run from " + std::to_string(v.escape_offsets[0]) +
           " to " + std::to_string(v.escape_offsets[v.rows]);
  }
  for (int64_t r = 0; r < v.rows; ++r) {
    if (v.escape_offsets[r + 1] < v.escape_offsets[r]) {
      return "escape_offsets decrease at row " + std::to_string(r) + " (" +
             std::to_string(v.escape_offsets[r]) + " then " +
             std::to_string(v.escape_offsets[r + 1]) + ")";
    }
  }
  const int64_t row_code_bytes = Ew4RowCodeBytes(v.cols);
  for (int64_t r = 0; r < v.rows; ++r) {
    const uint32_t lo = v.escape_offsets[r], hi = v.escape_offsets[r + 1];
    const uint8_t* codes = v.codes + r * row_code_bytes;
    for (uint32_t e = lo; e < hi; ++e) {
      const uint32_t col = v.escape_columns[e];
      if (col >= v.cols || (e > lo && col <= v.escape_columns[e - 1])) {
        return "escape_columns of row " + std::to_string(r) + " must increase within [0, " +
               std::to_string(v.cols) + "); entry " + std::to_string(e) + " is " +
               std::to_string(col);
      }
      if (Ew4CodeAt(codes, col) != 0) {
        return "escape entry " + std::to_string(e) + " names row " + std::to_string(r) +
               " column " + std::to_string(col) + ", whose code is not 0 (escape)";
      }
    }
    int64_t zeros = 0;
    for (int64_t c = 0; c + kEw4BlockWeights <= v.cols; c += kEw4BlockWeights) {
      const uint8_t* block = codes + c / 2;  // 32 bytes per 64 weights
      for (int i = 0; i < kEw4BlockCodeBytes; ++i) {
        zeros += (block[i] & 0x0F) == 0;
        zeros += (block[i] & 0xF0) == 0;
      }
    }
    for (int64_t c = v.cols / kEw4BlockWeights * kEw4BlockWeights; c < v.cols; ++c) {
      zeros += Ew4CodeAt(codes, c) == 0;
    }
    if (zeros != hi - lo) {
      return "row " + std::to_string(r) + " has " + std::to_string(zeros) +
             " weights coded 0 (escape) but " + std::to_string(hi - lo) + " escape entries";
    }
  }
  return "";
}

void Ew4DecodeRowsRef(const Ew4View& v, int64_t row_begin, int64_t row_end, int threads,
                      uint16_t* out) {
  const int64_t row_code_bytes = Ew4RowCodeBytes(v.cols);
  ParallelFor(row_end - row_begin, threads, 16, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t r = row_begin + i;
      const uint8_t* sm = v.sign_mantissa + r * v.cols;
      const uint8_t* codes = v.codes + r * row_code_bytes;
      uint16_t* o = out + i * v.cols;
      // Full blocks: the low nibbles are weights 0-31, the high ones 32-63, so both loops are
      // straight-line and vectorise (code 0 gives a placeholder the escapes then overwrite).
      const int64_t full = v.cols / kEw4BlockWeights * kEw4BlockWeights;
      for (int64_t b = 0; b < full; b += kEw4BlockWeights) {
        const uint8_t* block = codes + b / 2;
        for (int j = 0; j < kEw4BlockCodeBytes; ++j) {
          o[b + j] = Ew4Combine(v.window_start, block[j] & 0x0Fu, sm[b + j]);
        }
        for (int j = 0; j < kEw4BlockCodeBytes; ++j) {
          o[b + 32 + j] = Ew4Combine(v.window_start, block[j] >> 4, sm[b + 32 + j]);
        }
      }
      for (int64_t c = full; c < v.cols; ++c) {
        o[c] = Ew4Combine(v.window_start, Ew4CodeAt(codes, c), sm[c]);
      }
      for (uint32_t e = v.escape_offsets[r]; e < v.escape_offsets[r + 1]; ++e) {
        o[v.escape_columns[e]] = v.escape_values[e];
      }
    }
  });
}

}  // namespace df11
