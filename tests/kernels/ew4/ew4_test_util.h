// SPDX-License-Identifier: Apache-2.0
// Shared helpers for the ew4 tests: weight distributions (the DF11 tests' normal draws, skewed,
// wide-exponent), an encode + validate + decode round trip, and a first-mismatch report.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/ew4/ew4_encode.h"

namespace df11::testing {

// Exponents drawn from a few values with very unequal weights (one takes ~90 %).
std::vector<uint16_t> SkewedBf16(int64_t n, uint64_t seed);
// Every exponent 0..255 (zeros, subnormals, Inf and NaN patterns included) with random
// sign|mantissa bytes.
std::vector<uint16_t> WideExponentBf16(int64_t n, uint64_t seed);

// "" when a and b are equal, else the first mismatches (index, expected a, actual b).
std::string FirstMismatches(const std::vector<uint16_t>& expected,
                            const std::vector<uint16_t>& actual);
std::string FirstMismatches(const std::vector<float>& expected, const std::vector<float>& actual);

// Encodes (rows, cols) words (window_start as Ew4EncodeRef), validates and decodes all rows into
// a poisoned buffer; returns "" when bit-identical, else what differed or failed.
std::string Ew4RoundTrip(const std::vector<uint16_t>& words, int64_t rows, int64_t cols,
                         int threads, Ew4Encoded* encoded = nullptr, int32_t window_start = -1);

}  // namespace df11::testing
