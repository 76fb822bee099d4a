// SPDX-License-Identifier: Apache-2.0
// ew4 encoder (CPU): a BF16 matrix -> the ew4 fields (ew4_format.h). The window is the 15
// consecutive exponents that cover the most weights (the lowest such window on ties), so the
// encoding is a function of the weights alone. Multi-threaded over rows: a first pass counts
// each row's escapes, a prefix sum places them, a second pass writes every field.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/dfloat11/df11_code.h"
#include "kernels/ew4/ew4_format.h"

namespace df11 {

// The escape rate above which a matrix is not served as ew4 (it keeps DF11 or BF16): above 0.5 %
// escapes an ew4 matrix costs more than 12.24 bits per weight and the fused kernels patch an
// escape in most 64-weight blocks; trained LLM weights have 0.02-0.05 %.
inline constexpr double kEw4MaxEscapeRate = 0.005;

struct Ew4Encoded {
  int64_t rows = 0;
  int64_t cols = 0;
  int32_t window_start = 0;
  std::vector<uint8_t> sign_mantissa;    // (rows, cols)
  std::vector<uint8_t> codes;            // (rows, Ew4RowCodeBytes(cols))
  std::vector<uint32_t> escape_offsets;  // (rows + 1)
  std::vector<uint32_t> escape_columns;  // (n_escapes)
  std::vector<uint16_t> escape_values;   // (n_escapes)

  Ew4View View() const;
  int64_t n_escapes() const { return static_cast<int64_t>(escape_columns.size()); }
  int64_t stored_bytes() const { return Ew4StoredBytes(rows, cols, n_escapes()); }
  double escape_rate() const {
    return rows * cols > 0 ? static_cast<double>(n_escapes()) / static_cast<double>(rows * cols)
                           : 0.0;
  }
  // "" when the escape rate is within kEw4MaxEscapeRate, else why the matrix should not be ew4.
  std::string TooManyEscapes() const;
};

// The window_start whose 15 exponents hold the most weights of `histogram` (lowest on ties).
int32_t Ew4ChooseWindow(const ExponentHistogram& histogram);

// Weights of `histogram` outside the window starting at `window_start`.
uint64_t Ew4EscapesOf(const ExponentHistogram& histogram, int32_t window_start);

// Encodes `words` (rows, cols) row-major BF16 on `threads` threads. `window_start` in
// [0, kEw4MaxWindowStart] forces a window (tests: all-escape matrices); -1 chooses it
// (Ew4ChooseWindow). Returns "" or why the matrix cannot be stored: cols above kEw4MaxCols or
// 2^32 or more escapes.
std::string Ew4EncodeRef(const uint16_t* words, int64_t rows, int64_t cols, int threads,
                         Ew4Encoded* out, int32_t window_start = -1);

}  // namespace df11
