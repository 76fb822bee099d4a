// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/dfloat11/df11_decode.h"

namespace df11 {
namespace {

std::string Str(int64_t v) { return std::to_string(v); }

inline uint64_t LoadBe64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return __builtin_bswap64(v);
}

constexpr int kStreams = 4;  // independent decode chains per block (instruction-level parallelism)
constexpr int64_t kStreamWindows = kDf11ThreadsPerBlock / kStreams;
constexpr int64_t kStreamBits = kStreamWindows * 64;
constexpr int kSlack = 8;  // multi-symbol stores may write up to 3 bytes past the last code

// One code at `pos`; returns its length, or 0 when the tables reach no valid code.
inline uint32_t DecodeOne(const uint8_t* base, int64_t pos, const Df11CpuTables& t,
                          const uint8_t* luts, const uint8_t* lengths, uint32_t* symbol) {
  const uint64_t x = LoadBe64(base + (pos >> 3)) << (pos & 7);
  const uint32_t entry = t.fast[x >> (64 - Df11CpuTables::kBits)];
  if (entry != 0) [[likely]] {
    *symbol = entry & 0xFF;
    return entry >> 8;
  }
  return static_cast<uint32_t>(Df11WalkLuts(luts, lengths, static_cast<uint32_t>(x >> 32), symbol));
}

std::string NoCode(int64_t b, int64_t pos) {
  return "block " + Str(b) + ", bit " + Str(pos) +
         ": the lookup tables reach no valid code within 32 bits (pointer cycle, unused table "
         "entry or zero code length)";
}

// State of one decode chain: codes starting in [pos, end) go to out.
struct Chain {
  int64_t pos;
  int64_t end;
  uint8_t* out;
  int64_t k = 0;
};

// Advances a chain by one lookup: the whole codes in the next 12 bits, or one longer code
// through the stored tables. Returns false when the tables reach no valid code.
inline bool StepMulti(const uint8_t* base, const Df11CpuTables& t, const uint8_t* luts,
                      const uint8_t* lengths, Chain* c) {
  const uint64_t x = LoadBe64(base + (c->pos >> 3)) << (c->pos & 7);
  const uint64_t e = t.multi[x >> (64 - Df11CpuTables::kBits)];
  const uint32_t syms = static_cast<uint32_t>(e);
  std::memcpy(c->out + c->k, &syms, 4);
  const uint32_t n = (e >> 32) & 0xFF;
  if (n == 0) [[unlikely]] {
    uint32_t symbol;
    const int len = Df11WalkLuts(luts, lengths, static_cast<uint32_t>(x >> 32), &symbol);
    if (len == 0) return false;
    c->out[c->k++] = static_cast<uint8_t>(symbol);
    c->pos += len;
    return true;
  }
  c->k += n;
  c->pos += (e >> 40) & 0xFF;
  return true;
}

// Runs a chain to its end: lookups while all their codes start before the end, then one code
// at a time.
inline bool FinishChain(const uint8_t* base, const Df11CpuTables& t, const uint8_t* luts,
                        const uint8_t* lengths, Chain* c) {
  while (c->pos + Df11CpuTables::kBits <= c->end) {
    if (!StepMulti(base, t, luts, lengths, c)) return false;
  }
  while (c->pos < c->end) {
    uint32_t symbol;
    const uint32_t len = DecodeOne(base, c->pos, t, luts, lengths, &symbol);
    if (len == 0) return false;
    c->out[c->k++] = static_cast<uint8_t>(symbol);
    c->pos += len;
  }
  return true;
}

// The bytes of block b, or a zero-padded copy when 8-byte loads could pass the stream's end.
const uint8_t* BlockBase(const Df11UnitView& u, int64_t b, uint8_t (&pad)[kDf11BlockBytes + 16]) {
  const int64_t block_byte = b * kDf11BlockBytes;
  const uint8_t* base = u.encoded + block_byte;
  if (block_byte + kDf11BlockBytes + 8 <= u.n_bytes) return base;
  std::memset(pad, 0, sizeof(pad));
  std::memcpy(pad, base, static_cast<size_t>(std::min<int64_t>(u.n_bytes - block_byte, sizeof(pad))));
  return pad;
}

// Decodes the exponents of the codes that start in block b into exps[0, count); `exps` holds
// kDf11BlockBits + kSlack bytes.
std::string DecodeBlockExponents(const Df11UnitView& u, const Df11CpuTables& t, int64_t b,
                                 int64_t count, uint8_t* exps) {
  const uint8_t* luts = u.luts;
  const uint8_t* lengths = u.luts + static_cast<int64_t>(u.n_luts - 1) * 256;
  const int64_t stream_bits = 8 * (u.n_bytes - b * kDf11BlockBytes);  // from the block start
  const int64_t limit = std::min<int64_t>(kDf11BlockBits, stream_bits);
  uint8_t pad[kDf11BlockBytes + 16];
  const uint8_t* base = BlockBase(u, b, pad);
  const int64_t first_window = b * kDf11ThreadsPerBlock;
  const int64_t blocks = Df11PositionBlocks(u);
  const bool has_next = b + 1 < blocks && Df11OutputPosition(u, b + 2) > Df11OutputPosition(u, b + 1);
  const int64_t start = Df11GapAt(u.gaps, u.n_gap_bytes, first_window);
  int64_t end_pos;

  if (has_next && limit == kDf11BlockBits) {
    // A full block followed by more codes: every code starting in it is an element, so four
    // chains (each from its first window's gap) run independently and must meet at the seams.
    uint8_t buf[kStreams][kStreamBits + kSlack];
    Chain c[kStreams];
    int64_t starts[kStreams];
    for (int q = 0; q < kStreams; ++q) {
      starts[q] = c[q].pos = q == 0 ? start
                        : q * kStreamBits + Df11GapAt(u.gaps, u.n_gap_bytes,
                                                      first_window + q * kStreamWindows);
      c[q].end = (q + 1) * kStreamBits;
      c[q].out = buf[q];
    }
    bool ok = true;
    while (ok && c[0].pos + 12 <= c[0].end && c[1].pos + 12 <= c[1].end &&
           c[2].pos + 12 <= c[2].end && c[3].pos + 12 <= c[3].end) {
      ok = StepMulti(base, t, luts, lengths, &c[0]) & StepMulti(base, t, luts, lengths, &c[1]) &
           StepMulti(base, t, luts, lengths, &c[2]) & StepMulti(base, t, luts, lengths, &c[3]);
    }
    int64_t k = 0;
    for (int q = 0; q < kStreams; ++q) {
      if (!ok) return NoCode(b, c[q].pos);
      if (!FinishChain(base, t, luts, lengths, &c[q])) return NoCode(b, c[q].pos);
      if (q + 1 < kStreams && c[q].pos != starts[q + 1]) {
        return "window " + Str(first_window + (q + 1) * kStreamWindows) + ": gaps says its first "
               "code starts at bit " + Str(starts[q + 1] % 64) + " but the stream has one at bit " +
               Str(c[q].pos - (q + 1) * kStreamBits);
      }
      if (k + c[q].k > count) break;
      std::memcpy(exps + k, buf[q], static_cast<size_t>(c[q].k));
      k += c[q].k;
    }
    if (k != count) {
      return "block " + Str(b) + ": output_positions say " + Str(count) +
             " elements start in it but its codes number " + (k > count ? "more" : Str(k));
    }
    end_pos = c[kStreams - 1].pos;
  } else {
    // The last block (or one cut short by the stream's end): stop after `count` codes, since
    // what follows is padding.
    int64_t pos = start;
    for (int64_t k = 0; k < count; ++k) {
      if (pos >= limit) {
        return "block " + Str(b) + ": output_positions say " + Str(count) +
               " elements start in it but the codes starting in it end after " + Str(k);
      }
      uint32_t symbol;
      const uint32_t len = DecodeOne(base, pos, t, luts, lengths, &symbol);
      if (len == 0) return NoCode(b, pos);
      exps[k] = static_cast<uint8_t>(symbol);
      pos += len;
    }
    end_pos = pos;
  }
  if (count > 0 && end_pos > stream_bits) {
    return "block " + Str(b) + ": the last code ends at bit " + Str(end_pos) +
           ", past the end of encoded_exponent (" + Str(stream_bits) + " bits from the block)";
  }
  if (has_next) {
    const int64_t next_start =
        kDf11BlockBits + Df11GapAt(u.gaps, u.n_gap_bytes, first_window + kDf11ThreadsPerBlock);
    if (end_pos != next_start) {
      return "block " + Str(b) + ": its " + Str(count) + " codes end at bit " + Str(end_pos) +
             " but block " + Str(b + 1) + "'s first code starts at bit " + Str(next_start);
    }
  }
  return "";
}

}  // namespace

std::string Df11ValidateUnit(const Df11UnitView& u) {
  if (u.n_luts < 2 || u.n_luts > kDf11MaxLutRows) {
    return "luts has " + Str(u.n_luts) + " rows; expected 2.." + Str(kDf11MaxLutRows) +
           " (row 0, at most 16 sub-tables, the code-length row)";
  }
  const uint8_t* lengths = u.luts + static_cast<int64_t>(u.n_luts - 1) * 256;
  for (int s = 0; s < 256; ++s) {
    if (lengths[s] > kDf11MaxCodeLength) {
      return "luts gives exponent " + Str(s) + " a code of " + Str(lengths[s]) +
             " bits; codes are at most 32 bits";
    }
  }
  for (int r = 0; r + 1 < u.n_luts; ++r) {
    for (int i = 0; i < 256; ++i) {
      const int v = u.luts[r * 256 + i];
      if (v >= kDf11FirstPointer && 256 - v > u.n_luts - 2) {
        return "luts[" + Str(r) + "][" + Str(i) + "] = " + Str(v) + " points to row " +
               Str(256 - v) + " but the table has lookup rows 0.." + Str(u.n_luts - 2);
      }
    }
  }
  if (u.n_elements < 0 || u.n_elements > kDf11MaxElements) {
    return Str(u.n_elements) + " elements; a unit holds at most 2^31 - 1";
  }
  if (u.n_bytes < 0 || u.n_elements > 8 * u.n_bytes) {
    return "encoded_exponent has " + Str(u.n_bytes) + " bytes, too few for " +
           Str(u.n_elements) + " codes of at least one bit";
  }
  if (u.n_output_positions < 1) return "output_positions is empty";
  const int64_t blocks = Df11PositionBlocks(u);
  const int64_t stream_blocks = Df11BlockCount(u.n_bytes);
  if (blocks != stream_blocks && blocks != stream_blocks - 1) {
    return "output_positions has " + Str(u.n_output_positions) + " entries; the " +
           Str(u.n_bytes) + "-byte stream has " + Str(stream_blocks) + " blocks, so expected " +
           Str(stream_blocks + 1) + (stream_blocks > 0 ? " (or one fewer)" : "");
  }
  if (Df11OutputPosition(u, 0) != 0 && blocks > 0) {
    return "output_positions[0] = " + Str(Df11OutputPosition(u, 0)) + "; expected 0";
  }
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = Df11OutputPosition(u, b), hi = Df11OutputPosition(u, b + 1);
    if (hi < lo) {
      return "output_positions decreases at entry " + Str(b + 1) + " (" + Str(lo) + " -> " +
             Str(hi) + ")";
    }
    if (hi - lo > kDf11BlockBits) {
      return "output_positions puts " + Str(hi - lo) + " elements in block " + Str(b) +
             "; a block's 32768 bits start at most 32768 codes";
    }
  }
  if (Df11OutputPosition(u, blocks) != u.n_elements) {
    return "output_positions ends at " + Str(Df11OutputPosition(u, blocks)) +
           "; expected n_elements = " + Str(u.n_elements);
  }
  const int64_t gap_bits_needed = blocks * kDf11ThreadsPerBlock * kDf11GapBits;
  if (u.n_gap_bytes * 8 < gap_bits_needed) {
    return "gaps has " + Str(u.n_gap_bytes) + " bytes; " + Str(blocks) + " blocks need " +
           Str((gap_bits_needed + 7) / 8);
  }
  return "";
}

void BuildDf11CpuTables(const Df11UnitView& u, Df11CpuTables* tables) {
  const uint8_t* lengths = u.luts + static_cast<int64_t>(u.n_luts - 1) * 256;
  auto usable = [&](uint32_t symbol) {
    const uint32_t len = lengths[symbol];
    return len >= 1 && len <= static_cast<uint32_t>(kDf11MaxCodeLength);
  };
  // An entry is filled only where the 12 bits fix the walk's result: a symbol in row 0, or a
  // second-row symbol that is the same for all 16 values of the 4 bits the index does not see.
  for (uint32_t i = 0; i < (1u << Df11CpuTables::kBits); ++i) {
    uint16_t entry = 0;
    const uint32_t v = u.luts[i >> 4];
    if (v < static_cast<uint32_t>(kDf11FirstPointer)) {
      if (usable(v)) entry = static_cast<uint16_t>(v | (lengths[v] << 8));
    } else {
      const uint8_t* row = u.luts + static_cast<int64_t>(256 - v) * 256;
      const uint32_t s = row[(i & 15) << 4];
      bool same = s < static_cast<uint32_t>(kDf11FirstPointer) && usable(s);
      for (uint32_t low = 1; low < 16 && same; ++low) same = row[((i & 15) << 4) | low] == s;
      if (same) entry = static_cast<uint16_t>(s | (lengths[s] << 8));
    }
    tables->fast[i] = entry;
  }
  // A code after the first starts `used` bits into the index, whose low `used` bits are then
  // unknown (zero-filled). It belongs in the entry only if `fast` gives the same result for every
  // value of those bits, which always holds for a consistent table but not for a corrupt one:
  // settled[k][p] is fast's entry shared by all 12-bit indices with top bits p (12 - k of them),
  // or kMixed.
  constexpr uint32_t kMixed = 0xFFFFFFFFu;
  constexpr int kB = Df11CpuTables::kBits;
  std::vector<std::vector<uint32_t>> settled(kB);
  settled[0].assign(tables->fast.begin(), tables->fast.end());
  for (int k = 1; k < kB; ++k) {
    settled[k].resize(size_t{1} << (kB - k));
    for (size_t p = 0; p < settled[k].size(); ++p) {
      const uint32_t lo = settled[k - 1][2 * p], hi = settled[k - 1][2 * p + 1];
      settled[k][p] = lo == hi ? lo : kMixed;
    }
  }
  // Multi-code entries: whole codes, each resolved by `fast`, while they fit in the 12 bits.
  for (uint32_t i = 0; i < (1u << Df11CpuTables::kBits); ++i) {
    uint64_t syms = 0, n = 0, used = 0;
    uint64_t starts = 0xFFF;  // 4 bits per code 1..3: where it starts; 15 where absent
    while (n < 4) {
      const uint32_t rest = Df11CpuTables::kBits - used;
      // The next code's bits, left-aligned in 12 bits; the unknown low bits are zero.
      if (rest == 0) break;
      const uint32_t index = (i << used) & ((1u << Df11CpuTables::kBits) - 1);
      const uint32_t entry = settled[used][index >> used];
      if (entry == 0 || entry == kMixed || (entry >> 8) > rest) break;
      syms |= static_cast<uint64_t>(entry & 0xFF) << (8 * n);
      if (n >= 1) starts = (starts & ~(uint64_t{15} << (4 * (n - 1)))) | (used << (4 * (n - 1)));
      ++n;
      used += entry >> 8;
    }
    tables->multi[i] = syms | (n << 32) | (used << 40) | (starts << 48);
  }
}

std::string Df11DecodeRangeRef(const Df11UnitView& u, const Df11CpuTables& t, int64_t begin,
                               int64_t end, uint16_t* out) {
  if (begin >= end) return "";
  const int64_t blocks = Df11PositionBlocks(u);
  // The block holding `begin`: the last b with output_positions[b] <= begin.
  int64_t lo = 0, hi = blocks;  // invariant: op[lo] <= begin < op[hi]
  while (hi - lo > 1) {
    int64_t mid = (lo + hi) / 2;
    if (Df11OutputPosition(u, mid) <= begin) lo = mid; else hi = mid;
  }
  std::vector<uint8_t> exps(kDf11BlockBits + kSlack);
  for (int64_t b = lo; b < blocks; ++b) {
    const int64_t first = Df11OutputPosition(u, b), last = Df11OutputPosition(u, b + 1);
    if (first >= end) break;
    if (last <= begin || last == first) continue;
    std::string err = DecodeBlockExponents(u, t, b, last - first, exps.data());
    if (!err.empty()) return err;
    const int64_t a = std::max(begin, first), z = std::min(end, last);
    const uint8_t* __restrict sm = u.sign_mantissa + a;
    const uint8_t* __restrict e = exps.data() + (a - first);
    uint16_t* __restrict dst = out + (a - begin);
    for (int64_t i = 0; i < z - a; ++i) dst[i] = Df11Combine(e[i], sm[i]);
  }
  return "";
}

}  // namespace df11
