// SPDX-License-Identifier: Apache-2.0
#include "kernels/ew4/ew4_encode.h"

#include <algorithm>
#include <cstdio>
#include <span>

#include "kernels/common/parallel_for.h"
#include "kernels/dfloat11/df11_encode.h"

namespace df11 {
namespace {

constexpr int64_t kRowsPerChunk = 64;

bool InWindow(uint32_t exponent, int32_t window_start) {
  return exponent >= static_cast<uint32_t>(window_start) &&
         exponent < static_cast<uint32_t>(window_start + kEw4WindowExponents);
}

}  // namespace

Ew4View Ew4Encoded::View() const {
  Ew4View v;
  v.rows = rows;
  v.cols = cols;
  v.window_start = window_start;
  v.sign_mantissa = sign_mantissa.data();
  v.codes = codes.data();
  v.escape_offsets = escape_offsets.data();
  v.escape_columns = escape_columns.data();
  v.escape_values = escape_values.data();
  v.n_escapes = n_escapes();
  return v;
}

std::string Ew4Encoded::TooManyEscapes() const {
  if (escape_rate() <= kEw4MaxEscapeRate) return "";
  char buf[160];
  std::snprintf(buf, sizeof(buf),
                "%.3f %% of its weights escape the ew4 window (the limit is %.1f %%)",
                100 * escape_rate(), 100 * kEw4MaxEscapeRate);
  return buf;
}

int32_t Ew4ChooseWindow(const ExponentHistogram& h) {
  uint64_t best = 0, covered = 0;
  int32_t best_start = 0;
  for (int e = 0; e < kEw4WindowExponents; ++e) covered += h[e];
  best = covered;
  for (int32_t start = 1; start <= kEw4MaxWindowStart; ++start) {
    covered += h[start + kEw4WindowExponents - 1];
    covered -= h[start - 1];
    if (covered > best) best = covered, best_start = start;
  }
  return best_start;
}

uint64_t Ew4EscapesOf(const ExponentHistogram& h, int32_t window_start) {
  uint64_t n = 0;
  for (int e = 0; e < 256; ++e) n += InWindow(static_cast<uint32_t>(e), window_start) ? 0 : h[e];
  return n;
}

std::string Ew4EncodeRef(const uint16_t* words, int64_t rows, int64_t cols, int threads,
                         Ew4Encoded* out, int32_t window_start) {
  if (rows < 0 || cols < 0 || cols > kEw4MaxCols) {
    return "ew4: a matrix of " + std::to_string(rows) + " x " + std::to_string(cols) +
           " cannot be stored (columns must be in [0, 2^31))";
  }
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  if (window_start < 0) {
    std::vector<ExponentHistogram> parts(static_cast<size_t>(chunks));
    ParallelFor(chunks, threads, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        parts[c].fill(0);
        const int64_t r0 = c * kRowsPerChunk, r1 = std::min(rows, r0 + kRowsPerChunk);
        AccumulateExponentHistogram(std::span(words + r0 * cols, (r1 - r0) * cols), &parts[c]);
      }
    });
    ExponentHistogram h{};
    for (const ExponentHistogram& p : parts) {
      for (int e = 0; e < 256; ++e) h[e] += p[e];
    }
    window_start = Ew4ChooseWindow(h);
  }
  window_start = std::min(window_start, kEw4MaxWindowStart);
  // Escapes per row, then their offsets.
  std::vector<uint64_t> counts(static_cast<size_t>(rows) + 1, 0);
  ParallelFor(rows, threads, kRowsPerChunk, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      uint64_t n = 0;
      for (int64_t c = 0; c < cols; ++c) n += !InWindow((words[r * cols + c] >> 7) & 0xFF, window_start);
      counts[r + 1] = n;
    }
  });
  for (int64_t r = 0; r < rows; ++r) counts[r + 1] += counts[r];
  if (counts[rows] > UINT32_MAX) {
    return "ew4: " + std::to_string(counts[rows]) + " escapes do not fit 32-bit offsets";
  }
  const int64_t row_code_bytes = Ew4RowCodeBytes(cols);
  out->rows = rows;
  out->cols = cols;
  out->window_start = window_start;
  out->sign_mantissa.assign(static_cast<size_t>(rows * cols), 0);
  out->codes.assign(static_cast<size_t>(rows * row_code_bytes), 0);
  out->escape_offsets.assign(counts.begin(), counts.end());
  out->escape_columns.assign(counts[rows], 0);
  out->escape_values.assign(counts[rows], 0);
  ParallelFor(rows, threads, kRowsPerChunk, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint16_t* w = words + r * cols;
      uint8_t* sm = out->sign_mantissa.data() + r * cols;
      uint8_t* codes = out->codes.data() + r * row_code_bytes;
      uint64_t esc = counts[r];
      for (int64_t c = 0; c < cols; ++c) {
        const uint32_t exponent = (w[c] >> 7) & 0xFF;
        sm[c] = static_cast<uint8_t>(((w[c] >> 8) & 0x80) | (w[c] & 0x7F));
        uint32_t code = 0;
        if (InWindow(exponent, window_start)) {
          code = exponent - static_cast<uint32_t>(window_start) + 1;
        } else {
          out->escape_columns[esc] = static_cast<uint32_t>(c);
          out->escape_values[esc] = w[c];
          ++esc;
        }
        const int within = static_cast<int>(c % kEw4BlockWeights);
        codes[c / kEw4BlockWeights * kEw4BlockCodeBytes + (within & 31)] |=
            static_cast<uint8_t>(within < 32 ? code : code << 4);
      }
    }
  });
  return "";
}

}  // namespace df11
