// SPDX-License-Identifier: Apache-2.0
// CPU mirror of the CUDA decode kernel (df11_decode.cu): per block, every window is decoded
// independently from its gap with the same multi-code table lookups (pass 1 counts, a prefix sum
// places them, pass 2 writes), and the same consistency rules flag corrupt gaps, positions and
// codes.
#include <algorithm>
#include <vector>

#include "kernels/dfloat11/df11_decode.h"
#include "kernels/dfloat11/df11_window.h"

namespace df11 {
namespace {

std::string Str(int64_t v) { return std::to_string(v); }

// 12 stream bytes from window w's start, zero past the stream's end.
Df11WindowBits LoadWindow(const Df11UnitView& u, int64_t w) {
  uint8_t bytes[12] = {};
  const int64_t first = w * kDf11BytesPerThread;
  for (int i = 0; i < 12; ++i) {
    if (first + i < u.n_bytes) bytes[i] = u.encoded[first + i];
  }
  return Df11WindowFromBytes(bytes);
}

template <bool kLate>
std::string DecodeWindows(const Df11UnitView& u, int64_t begin, int64_t end, uint16_t* out) {
  const uint8_t* lengths = u.luts + static_cast<int64_t>(u.n_luts - 1) * 256;
  Df11CpuTables tables;
  BuildDf11CpuTables(u, &tables);
  const uint64_t* multi = tables.multi.data();
  const int64_t blocks = Df11PositionBlocks(u);
  constexpr int kT = kDf11ThreadsPerBlock;
  std::vector<uint8_t> exps(kDf11BlockBits);
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = Df11OutputPosition(u, b), last = Df11OutputPosition(u, b + 1);
    const int64_t count = last - first;
    if (count == 0 || last <= begin || first >= end) continue;
    const bool has_next =
        b + 1 < blocks && Df11OutputPosition(u, b + 2) > Df11OutputPosition(u, b + 1);
    const int64_t stream_bits = 8 * u.n_bytes - b * kDf11BlockBits;
    // Pass 1: counts per window ("threads").
    Df11WindowResult r[kT];
    int64_t offset[kT + 1];
    offset[0] = 0;
    for (int t = 0; t < kT; ++t) {
      const int64_t w = b * kT + t;
      r[t] = Df11DecodeWindowGroups<kLate>(LoadWindow(u, w), Df11GapAt(u.gaps, u.n_gap_bytes, w),
                                    multi, u.luts, lengths,
                                    [](int32_t, uint32_t, uint32_t, uint32_t) {});
      offset[t + 1] = offset[t] + r[t].count;
    }
    for (int t = 0; t < kT; ++t) {
      const int64_t w = b * kT + t;
      if (!r[t].ok && offset[t] + r[t].count < count) {
        return "block " + Str(b) + ", window " + Str(w) +
               ": the lookup tables reach no valid code within 32 bits";
      }
      // The next window's gap must be where this window's last code ends.
      const bool next_is_real = offset[t] + r[t].count < count || (t == kT - 1 && has_next);
      if (next_is_real) {
        const uint32_t next_gap = Df11GapAt(u.gaps, u.n_gap_bytes, w + 1);
        if (static_cast<uint32_t>(r[t].end - 64) != next_gap) {
          return "window " + Str(w + 1) + ": gaps says its first code starts at bit " +
                 Str(next_gap) + " but the stream has one at bit " + Str(r[t].end - 64);
        }
      }
    }
    if (offset[kT] < count || (has_next && offset[kT] != count)) {
      return "block " + Str(b) + ": output_positions say " + Str(count) +
             " elements start in it but its windows hold " + Str(offset[kT]) + " codes";
    }
    // Pass 2: exponents to their places; the last real code must end inside the stream.
    bool past_end = false;
    for (int t = 0; t < kT; ++t) {
      if (offset[t] >= count) break;
      const int64_t w = b * kT + t;
      const int64_t base = offset[t];
      const int64_t window_codes = r[t].count;  // kLate: the last group may hold more
      Df11DecodeWindowGroups<kLate>(
          LoadWindow(u, w), Df11GapAt(u.gaps, u.n_gap_bytes, w), multi, u.luts, lengths,
          [&](int32_t i, uint32_t symbols, uint32_t n, uint32_t start) {
            uint32_t code_end = start;
            for (uint32_t j = 0; j < n && i + j < window_codes; ++j) {
              const uint32_t symbol = (symbols >> (8 * j)) & 0xFFu;
              const int64_t k = base + i + j;
              code_end += lengths[symbol];
              if (k < count) exps[k] = static_cast<uint8_t>(symbol);
              if (k == count - 1 && t * 64 + code_end > stream_bits) past_end = true;
            }
          });
    }
    if (past_end) {
      return "block " + Str(b) + ": the last code ends past the end of encoded_exponent";
    }
    const int64_t a = std::max(begin, first), z = std::min(end, last);
    for (int64_t i = a; i < z; ++i) out[i - begin] = Df11Combine(exps[i - first], u.sign_mantissa[i]);
  }
  return "";
}

}  // namespace

std::string Df11DecodeWindowsRef(const Df11UnitView& u, int64_t begin, int64_t end,
                                 uint16_t* out, bool late_cut) {
  return late_cut ? DecodeWindows<true>(u, begin, end, out)
                  : DecodeWindows<false>(u, begin, end, out);
}

}  // namespace df11
