// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the CPU kernel tests: a fresh random seed (printed, so a failure can be
// replayed) and a tolerance comparison that reports the first mismatches.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace df11 {

inline uint64_t FreshSeed() {
  std::random_device rd;
  uint64_t seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  return seed;
}

// "" when |actual - expected| <= atol + rtol * |expected| everywhere, else the first mismatches.
inline std::string CompareClose(const std::vector<double>& expected,
                                const std::vector<float>& actual, double atol, double rtol) {
  std::string report;
  int64_t bad = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::abs(actual[i] - expected[i]) <= atol + rtol * std::abs(expected[i])) continue;
    if (++bad <= 8) {
      report += "  [" + std::to_string(i) + "] expected " + std::to_string(expected[i]) +
                " actual " + std::to_string(actual[i]) + "\n";
    }
  }
  return bad == 0 ? "" : std::to_string(bad) + " mismatches, first:\n" + report;
}

}  // namespace df11
