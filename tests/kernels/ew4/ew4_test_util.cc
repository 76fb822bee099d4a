// SPDX-License-Identifier: Apache-2.0
#include "tests/kernels/ew4/ew4_test_util.h"

#include <cstdio>
#include <cstring>
#include <random>

#include "kernels/dfloat11/df11_layout.h"
#include "kernels/ew4/ew4_decode.h"

namespace df11::testing {

std::vector<uint16_t> SkewedBf16(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint16_t> out(static_cast<size_t>(n));
  for (auto& w : out) {
    const uint64_t r = rng() % 1000;
    const uint32_t e = r < 900 ? 120 : r < 990 ? 119 : r < 999 ? 124 : 100 + rng() % 40;
    w = Df11Combine(e, static_cast<uint32_t>(rng() & 0xFF));
  }
  return out;
}

std::vector<uint16_t> WideExponentBf16(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint16_t> out(static_cast<size_t>(n));
  for (auto& w : out) w = static_cast<uint16_t>(rng());
  for (int64_t e = 0; e < 256 && e < n; ++e) out[e] = Df11Combine(static_cast<uint32_t>(e), 0x55);
  return out;
}

template <typename T>
static std::string Mismatches(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) {
    return "sizes differ: " + std::to_string(a.size()) + " vs " + std::to_string(b.size());
  }
  std::string out;
  int shown = 0;
  for (size_t i = 0; i < a.size() && shown < 5; ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(T)) == 0) continue;
    char buf[128];
    if constexpr (sizeof(T) == 2) {
      std::snprintf(buf, sizeof(buf), "[%zu] expected 0x%04x got 0x%04x; ", i, a[i], b[i]);
    } else {
      std::snprintf(buf, sizeof(buf), "[%zu] expected %.9g got %.9g; ", i, a[i], b[i]);
    }
    out += buf;
    ++shown;
  }
  return out;
}

std::string FirstMismatches(const std::vector<uint16_t>& a, const std::vector<uint16_t>& b) {
  return Mismatches(a, b);
}
std::string FirstMismatches(const std::vector<float>& a, const std::vector<float>& b) {
  return Mismatches(a, b);
}

std::string Ew4RoundTrip(const std::vector<uint16_t>& words, int64_t rows, int64_t cols,
                         int threads, Ew4Encoded* encoded, int32_t window_start) {
  Ew4Encoded e;
  std::string err = Ew4EncodeRef(words.data(), rows, cols, threads, &e, window_start);
  if (!err.empty()) return "encode: " + err;
  err = Ew4ValidateView(e.View());
  if (!err.empty()) return "validate: " + err;
  std::vector<uint16_t> decoded(words.size(), 0xDEAD);
  Ew4DecodeRowsRef(e.View(), 0, rows, threads, decoded.data());
  err = FirstMismatches(words, decoded);
  if (encoded != nullptr) *encoded = std::move(e);
  return err;
}

}  // namespace df11::testing
