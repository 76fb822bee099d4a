// SPDX-License-Identifier: Apache-2.0
// DF11 encoder (CPU): BF16 matrices -> one unit in the published layout. Multi-threaded across
// chunks of elements: per-chunk exponent histograms give each chunk's bit offset (a prefix sum
// of code lengths), so every chunk writes its codes, gaps and block positions independently.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kernels/dfloat11/df11_code.h"
#include "kernels/dfloat11/df11_layout.h"

namespace df11 {

struct Df11EncodedUnit {
  std::vector<uint8_t> luts;  // (n_luts, 256)
  int32_t n_luts = 0;
  std::vector<uint8_t> encoded_exponent;  // (n_bytes)
  std::vector<uint8_t> sign_mantissa;     // (n_elements)
  std::vector<uint8_t> output_positions;  // (4 * (n_blocks + 1)) little-endian uint32
  std::vector<uint8_t> gaps;              // (320 * n_blocks): 5-bit fields, 512 per block
  std::vector<int64_t> split_positions;   // (n_matrices - 1)
  Df11Code code;
  ExponentHistogram histogram{};
  int64_t n_elements = 0;

  Df11UnitView View() const;
};

// Exponent histogram of BF16 words (one thread).
void AccumulateExponentHistogram(std::span<const uint16_t> words, ExponentHistogram* histogram);

// Encodes the concatenation of `matrices` (BF16 bit patterns, each flattened row-major).
// Returns false with *error set when the data cannot be coded: an exponent >= 240 (the message
// says how many) or more than 2^31 - 1 elements.
bool Df11EncodeRef(std::span<const std::span<const uint16_t>> matrices, int threads,
                   Df11EncodedUnit* out, std::string* error);

}  // namespace df11
