// SPDX-License-Identifier: Apache-2.0
// The exponent code of a DF11 unit: an optimal length-limited prefix code (package-merge) made
// canonical, and the lookup tables the format stores for it (spec section 2.1). The length limit
// starts at 32 bits and is lowered until the tables fit the format's 16 sub-tables.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace df11 {

using ExponentHistogram = std::array<uint64_t, 256>;

struct Df11Code {
  std::array<uint8_t, 256> length{};  // code length per exponent; 0 = not in the code
  std::array<uint32_t, 256> code{};   // code bits, right-aligned in `length` bits
  int max_length = 0;
  int n_symbols = 0;
  int length_limit = 0;  // the limit the package-merge ran with
};

// Optimal prefix code lengths for `counts` (0 = absent) with every length <= `limit`.
// Requires 2^limit >= number of present symbols. A single present symbol gets length 1.
std::array<uint8_t, 256> LengthLimitedCodeLengths(const ExponentHistogram& counts, int limit);

// Builds the code for a unit's exponent histogram. Fails (returns false with a message in
// *error) when an exponent >= 240 occurs: such values cannot be represented by the format.
bool BuildDf11Code(const ExponentHistogram& histogram, Df11Code* code, std::string* error);

// Number of sub-tables (lookup rows after row 0) the code's tables need.
int Df11SubTableCount(const Df11Code& code);

// The `luts` tensor: (n_rows, 256) bytes, lookup rows then the code-length row.
std::vector<uint8_t> BuildDf11Luts(const Df11Code& code, int* n_rows);

// Shannon entropy in bits per symbol of a histogram.
double HistogramEntropy(const ExponentHistogram& histogram);

}  // namespace df11
