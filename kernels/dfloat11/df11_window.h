// SPDX-License-Identifier: Apache-2.0
// Per-window DF11 decoding, shared by the CUDA kernel and its CPU mirror (Df11DecodeWindowsRef):
// a window is 64 stream bits; the codes that start in it are decoded from its gap, reading up to
// 32 bits into the next window. Everything here is __host__ __device__.
#pragma once

#include <cstdint>

#include "kernels/common/host_device.h"
#include "kernels/dfloat11/df11_layout.h"

namespace df11 {

// A window's 8 bytes and the next window's first 4, as big-endian words (w[0] = bits 0..31).
struct Df11WindowBits {
  uint32_t w[3];
};

// Builds the words from 12 stream bytes (MSB-first).
DF11_HD Df11WindowBits Df11WindowFromBytes(const uint8_t* p) {
  Df11WindowBits b;
  for (int i = 0; i < 3; ++i) {
    b.w[i] = (static_cast<uint32_t>(p[4 * i]) << 24) | (static_cast<uint32_t>(p[4 * i + 1]) << 16) |
             (static_cast<uint32_t>(p[4 * i + 2]) << 8) | static_cast<uint32_t>(p[4 * i + 3]);
  }
  return b;
}

// The 32 stream bits starting at bit p (0 <= p < 64) of the window.
DF11_HD uint32_t Df11Peek32(const Df11WindowBits& b, uint32_t p) {
  const uint32_t hi = p < 32 ? b.w[0] : b.w[1];
  const uint32_t lo = p < 32 ? b.w[1] : b.w[2];
  const uint32_t s = p & 31;
#if defined(__CUDA_ARCH__)
  return __funnelshift_l(lo, hi, s);  // (hi:lo << s) >> 32, one instruction; s == 0 gives hi
#else
  return s == 0 ? hi : (hi << s) | (lo >> (32 - s));
#endif
}

// Result of decoding one window.
struct Df11WindowResult {
  int32_t count;  // codes that start in the window
  int32_t end;    // bit just past the last of them (64..95), relative to the window
  bool ok;        // false: the tables reached no valid code (count/end cover the codes before)
};

// Decodes the codes starting in the window at bits gap..63, calling emit(index, symbol, end)
// for each (end: the bit just past that code, relative to the window).
template <typename Emit>
DF11_HD Df11WindowResult Df11DecodeWindow(const Df11WindowBits& bits, uint32_t gap,
                                          const uint8_t* luts, const uint8_t* lengths,
                                          Emit&& emit) {
  Df11WindowResult r{0, static_cast<int32_t>(gap), true};
  uint32_t pos = gap;
  while (pos < 64) {
    uint32_t symbol;
    const int len = Df11WalkLuts(luts, lengths, Df11Peek32(bits, pos), &symbol);
    if (len == 0) {
      r.ok = false;
      break;
    }
    pos += static_cast<uint32_t>(len);
    emit(r.count, symbol, pos);
    ++r.count;
  }
  r.end = static_cast<int32_t>(pos);
  return r;
}

// Entries of the multi-code table (Df11CpuTables::multi, also copied to the device): indexed by
// the next 12 stream bits; bits 0-31 up to four symbols, bits 32-39 their number (0: the next
// code is longer than 12 bits or not fixed by them), bits 40-47 their total length, bits 48-59
// where codes 1, 2 and 3 start (4 bits each; 15 where absent).
inline constexpr int kDf11MultiBits = 12;

// Df11DecodeWindow with up to four codes per table lookup: the same codes, counts, end and
// failure rule, but emit_group(index, symbols, n, start) is called once per group of n codes
// (symbols packed 8 bits each, the first lowest; start: the group's first bit in the window);
// only codes longer than 12 bits walk the stored tables.
// kCutLate false: near the window's end a lookup's group is cut after its last code that starts
// before bit 64, every lookup checking. kCutLate true: the lookups run uncut and the loop only
// tests pos < 64, so the last group handed to emit_group may hold codes that start at or past bit
// 64 (the next window's); the result's count and end leave them out (one cut after the loop), and
// the caller must not keep codes at indices >= count.
template <bool kCutLate = false, typename EmitGroup>
DF11_HD Df11WindowResult Df11DecodeWindowGroups(const Df11WindowBits& bits, uint32_t gap,
                                                const uint64_t* multi, const uint8_t* luts,
                                                const uint8_t* lengths, EmitGroup&& emit_group) {
  Df11WindowResult r{0, static_cast<int32_t>(gap), true};
  uint32_t pos = gap;
  uint32_t last_pos = 64;  // kCutLate: where the last lookup's group started (64: a walked code)
  while (pos < 64) {
    const uint32_t peek = Df11Peek32(bits, pos);
    const uint64_t e = multi[peek >> (32 - kDf11MultiBits)];
    uint32_t n = static_cast<uint32_t>(e >> 32) & 0xFFu;
    if (n != 0) [[likely]] {
      uint32_t used = static_cast<uint32_t>(e >> 40) & 0xFFu;
      if constexpr (kCutLate) {
        last_pos = pos;
      } else {
        const uint32_t rest = 64 - pos;  // codes starting before `rest` belong to this window
        if (rest < static_cast<uint32_t>(kDf11MultiBits)) {
          const uint32_t s = static_cast<uint32_t>(e >> 48);
          const uint32_t k = 1 + ((s & 15u) < rest) + (((s >> 4) & 15u) < rest) +
                             (((s >> 8) & 15u) < rest);  // absent codes hold 15 >= rest
          if (k < n) {
            n = k;
            used = (s >> (4 * (k - 1))) & 15u;  // where code k starts: the cut group's length
          }
        }
      }
      emit_group(r.count, static_cast<uint32_t>(e), n, pos);
      r.count += static_cast<int32_t>(n);
      pos += used;
      continue;
    }
    uint32_t symbol;
    const int len = Df11WalkLuts(luts, lengths, peek, &symbol);
    if (len == 0) {
      r.ok = false;
      break;
    }
    emit_group(r.count, symbol, 1u, pos);
    ++r.count;
    pos += static_cast<uint32_t>(len);
    if constexpr (kCutLate) last_pos = 64;  // a walked code starts before bit 64: nothing to cut
  }
  if constexpr (kCutLate) {
    if (pos > 64 && last_pos < 64) {  // the last group may run into the next window
      // Looked up again here rather than kept in a register through the loop.
      const uint32_t meta = static_cast<uint32_t>(
          multi[Df11Peek32(bits, last_pos) >> (32 - kDf11MultiBits)] >> 32);
      const uint32_t rest = 64 - last_pos, n = meta & 0xFFu, s = meta >> 16;
      const uint32_t k = 1 + ((s & 15u) < rest) + (((s >> 4) & 15u) < rest) +
                         (((s >> 8) & 15u) < rest);
      if (k < n) {
        r.count -= static_cast<int32_t>(n - k);
        pos = last_pos + ((s >> (4 * (k - 1))) & 15u);
      }
    }
  }
  r.end = static_cast<int32_t>(pos);
  return r;
}

}  // namespace df11
