// SPDX-License-Identifier: Apache-2.0
#include "tests/kernels/dfloat11/df11_test_util.h"

#include <cstdio>

#include "kernels/common/bf16.h"

namespace df11::testing {

uint64_t FreshSeed() {
  std::random_device rd;
  return (static_cast<uint64_t>(rd()) << 32) ^ rd();
}

std::vector<uint16_t> NormalBf16(int64_t n, double sigma, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, static_cast<float>(sigma));
  std::vector<uint16_t> out(n);
  for (auto& w : out) w = FloatToBf16(dist(rng));
  return out;
}

std::string DecodeAll(const Df11UnitView& view, std::vector<uint16_t>* out) {
  std::string err = Df11ValidateUnit(view);
  if (!err.empty()) return "validate: " + err;
  Df11CpuTables tables;
  BuildDf11CpuTables(view, &tables);
  out->assign(view.n_elements, 0xDEAD);  // poison: unwritten elements show
  err = Df11DecodeRangeRef(view, tables, 0, view.n_elements, out->data());
  return err.empty() ? "" : "decode: " + err;
}

std::string RoundTrip(std::span<const std::span<const uint16_t>> matrices, int threads,
                      Df11EncodedUnit* unit_out) {
  Df11EncodedUnit unit;
  std::string err;
  if (!Df11EncodeRef(matrices, threads, &unit, &err)) return "encode: " + err;
  std::vector<uint16_t> decoded;
  err = DecodeAll(unit.View(), &decoded);
  if (!err.empty()) return err;
  std::string mismatches;
  int64_t index = 0, shown = 0;
  for (auto m : matrices) {
    for (uint16_t expected : m) {
      if (decoded[index] != expected && shown < 5) {
        char buf[96];
        std::snprintf(buf, sizeof(buf), "[%lld] expected 0x%04x got 0x%04x; ",
                      static_cast<long long>(index), expected, decoded[index]);
        mismatches += buf;
        ++shown;
      }
      ++index;
    }
  }
  if (unit_out != nullptr) *unit_out = std::move(unit);
  return mismatches;
}

std::string RoundTrip(const std::vector<uint16_t>& words, int threads, Df11EncodedUnit* unit) {
  std::span<const uint16_t> one(words);
  return RoundTrip(std::span<const std::span<const uint16_t>>(&one, 1), threads, unit);
}

}  // namespace df11::testing
