// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for hostile ew4 fields: Ew4ValidateView must refuse them, or the decoder and
// every fused GEMV path must run without reading out of bounds. The input mutates a valid
// matrix (N(0, 0.02) weights with escapes, 7 x 200: a partial last block) as the loader hands
// fields over, sized by the shape: byte 0 replaces the window, byte 1 shortens the escape list
// (columns and values, not the offsets), the rest are (offset, xor) byte triples applied across
// the concatenated fields.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_encode.h"
#include "kernels/ew4/ew4_gemv.h"

namespace {

constexpr int64_t kRows = 7, kCols = 200;

const df11::Ew4Encoded& Base() {
  static const df11::Ew4Encoded e = [] {
    std::mt19937_64 rng(11);
    std::normal_distribution<float> d(0.0f, 0.02f);
    std::vector<uint16_t> w(kRows * kCols);
    for (auto& x : w) x = df11::FloatToBf16(d(rng));
    for (int i = 0; i < 30; ++i) w[i * 41 % w.size()] = df11::FloatToBf16(1000.0f + i);
    df11::Ew4Encoded out;
    DF11_CHECK(df11::Ew4EncodeRef(w.data(), kRows, kCols, 1, &out).empty());
    return out;
  }();
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  df11::Ew4Encoded e = Base();
  size_t pos = 0;
  if (pos < size) e.window_start = data[pos++];
  if (pos < size) {
    const size_t cut = std::min<size_t>(e.escape_columns.size(), data[pos++] % 4);
    e.escape_columns.resize(e.escape_columns.size() - cut);
    e.escape_values.resize(e.escape_values.size() - cut);
  }
  struct Field {
    uint8_t* bytes;
    size_t size;
  };
  Field fields[] = {
      {e.sign_mantissa.data(), e.sign_mantissa.size()},
      {e.codes.data(), e.codes.size()},
      {reinterpret_cast<uint8_t*>(e.escape_offsets.data()), 4 * e.escape_offsets.size()},
      {reinterpret_cast<uint8_t*>(e.escape_columns.data()), 4 * e.escape_columns.size()},
      {reinterpret_cast<uint8_t*>(e.escape_values.data()), 2 * e.escape_values.size()},
  };
  size_t total = 0;
  for (const Field& f : fields) total += f.size;
  for (; pos + 2 < size; pos += 3) {
    size_t at = ((size_t{data[pos]} << 8) | data[pos + 1]) * 7 % std::max<size_t>(total, 1);
    for (const Field& f : fields) {
      if (at < f.size) {
        f.bytes[at] ^= data[pos + 2];
        break;
      }
      at -= f.size;
    }
  }
  const df11::Ew4View v = e.View();
  if (!df11::Ew4ValidateView(v).empty()) return 0;
  std::vector<uint16_t> out(kRows * kCols);
  df11::Ew4DecodeRowsRef(v, 0, kRows, 1, out.data());
  std::vector<float> x(2 * kCols, 0.5f), y(2 * kRows);
  for (auto level : {df11::CpuLevel::kScalar, df11::CpuLevel::kAvx2, df11::CpuLevel::kAvx512}) {
    df11::Ew4GemvCpu(x.data(), v, nullptr, y.data(), 2, 1, level);
  }
  return 0;
}
