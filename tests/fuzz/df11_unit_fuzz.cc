// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for DF11 unit validation and both CPU decoders. The input mutates a valid unit
// (random N(0, 0.02) weights, two blocks): its first 6 bytes shorten the six fields, the rest
// are (offset, xor) byte pairs applied across the concatenated fields. Validation must reject or
// the decoders must return (error or not) without reading out of bounds.
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/dfloat11/df11_decode.h"
#include "kernels/dfloat11/df11_encode.h"

namespace {

const df11::Df11EncodedUnit& BaseUnit() {
  static const df11::Df11EncodedUnit unit = [] {
    std::mt19937_64 rng(7);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    std::vector<uint16_t> words(24'000);
    for (auto& w : words) w = df11::FloatToBf16(dist(rng));
    // A few rare exponents so that the code has long codes and sub-tables.
    for (int i = 0; i < 40; ++i) words[i * 97] = df11::Df11Combine(60 + i, i);
    df11::Df11EncodedUnit u;
    std::string err;
    std::span<const uint16_t> one(words);
    DF11_CHECK_MSG(df11::Df11EncodeRef(std::span<const std::span<const uint16_t>>(&one, 1), 1, &u, &err), err);
    return u;
  }();
  return unit;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const df11::Df11EncodedUnit& base = BaseUnit();
  std::vector<uint8_t> fields[5] = {base.luts, base.encoded_exponent, base.sign_mantissa,
                                    base.output_positions, base.gaps};
  size_t pos = 0;
  for (int f = 0; f < 5 && pos < size; ++f, ++pos) {
    const size_t cut = std::min<size_t>(fields[f].size(), data[pos] % 8);
    fields[f].resize(fields[f].size() - cut);
  }
  size_t total = 0;
  for (auto& f : fields) total += f.size();
  for (; pos + 2 < size; pos += 3) {
    size_t at = ((size_t{data[pos]} << 8) | data[pos + 1]) * 7 % std::max<size_t>(total, 1);
    for (auto& f : fields) {
      if (at < f.size()) {
        f[at] ^= data[pos + 2];
        break;
      }
      at -= f.size();
    }
  }
  df11::Df11UnitView v;
  v.luts = fields[0].data();
  v.n_luts = static_cast<int32_t>(fields[0].size() / 256);
  v.encoded = fields[1].data();
  v.n_bytes = static_cast<int64_t>(fields[1].size());
  v.sign_mantissa = fields[2].data();
  v.n_elements = static_cast<int64_t>(fields[2].size());
  v.output_positions = fields[3].data();
  v.n_output_positions = static_cast<int64_t>(fields[3].size() / 4);
  v.gaps = fields[4].data();
  v.n_gap_bytes = static_cast<int64_t>(fields[4].size());
  if (!df11::Df11ValidateUnit(v).empty()) return 0;
  df11::Df11CpuTables tables;
  df11::BuildDf11CpuTables(v, &tables);
  std::vector<uint16_t> out(static_cast<size_t>(v.n_elements));
  (void)df11::Df11DecodeRangeRef(v, tables, 0, v.n_elements, out.data());
  (void)df11::Df11DecodeWindowsRef(v, 0, v.n_elements, out.data(), /*late_cut=*/false);
  (void)df11::Df11DecodeWindowsRef(v, 0, v.n_elements, out.data(), /*late_cut=*/true);
  return 0;
}
