// SPDX-License-Identifier: Apache-2.0
// Shared helpers for the DF11 codec tests: random BF16 data with a fresh, printed seed, and a
// round trip through the encoder and the CPU decoder.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "kernels/dfloat11/df11_decode.h"
#include "kernels/dfloat11/df11_encode.h"

namespace df11::testing {

// A seed from std::random_device; tests print it (SCOPED_TRACE) so failures can be replayed.
uint64_t FreshSeed();

// n BF16 words drawn from N(0, sigma), rounded to nearest even.
std::vector<uint16_t> NormalBf16(int64_t n, double sigma, uint64_t seed);

// Encodes, validates and decodes in full; returns "" when the decode is bit-identical, else a
// description of the first mismatches (index, expected, actual) or of the error.
std::string RoundTrip(std::span<const std::span<const uint16_t>> matrices, int threads,
                      Df11EncodedUnit* unit = nullptr);
std::string RoundTrip(const std::vector<uint16_t>& words, int threads = 1,
                      Df11EncodedUnit* unit = nullptr);

// Decodes a unit (validate, tables, full range) into `out`; returns "" or the error.
std::string DecodeAll(const Df11UnitView& view, std::vector<uint16_t>* out);

}  // namespace df11::testing
