// SPDX-License-Identifier: Apache-2.0
// The CPU fused GEMV's vector paths, compiled per instruction set with function attributes and
// chosen at run time (kernels/common/cpu_features), so one binary uses what the machine it runs on has.
// A block of 64 weights is decoded in registers: the 32 code bytes, loaded into both halves of
// a vector with the high half shifted by a nibble, give the 64 codes; two byte lookups (vpshufb)
// turn them into the exponent's bits of each weight's low and high byte, two bit merges add the
// sign|mantissa bytes, two byte unpacks give the BF16 words, and each vector of 32 words gives
// two vectors of 16 FP32 weights by a shift (even words) and a mask (odd words): F0..F3, where
// lane 4 * q + u of Ff holds weight WeightOf(f, 4 * q + u) = 16 * q + 8 * (f / 2) + 2 * u + f % 2
// (q: the 128-bit lane). Only the lookups and the unpacks use the shuffle port. The activations
// are permuted once per call into that order (Permuted), so every path, AVX2 (two halves of 8
// lanes) included, adds each weight into partial Ew4GemvLane(p) as the oracle does. Escapes are
// patched into the decoded vectors before they are multiplied (a branch per block, taken rarely).
// GCC 12 warns that the "undefined" source operand its own AVX-512 headers pass to
// _mm512_inserti64x4 may be uninitialized; that operand is fully overwritten.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"
#include "kernels/common/stream_rows.h"
#include "kernels/ew4/ew4_gemv.h"
#include "kernels/ew4/ew4_gemv_order.h"

#if DF11_HAS_X86_LEVELS  // the vector paths; elsewhere the scalar oracle serves every level
#include <immintrin.h>
#endif

namespace df11 {
#if DF11_HAS_X86_LEVELS
namespace {

// Rows whose partial sums one RunRows call keeps (a thread's run of rows goes in such chunks).
constexpr int64_t kRowsPerChunk = 16;
// How far ahead (weights) of the block being decoded the bytes are prefetched, in the order of
// kernels/common/stream_rows.h: the hardware prefetcher alone leaves memory bandwidth unused when
// the weights stream from DRAM, as a model's do once it is larger than the last-level cache
// (batch 1, 4096 x 4096, one thread: ~15 % faster at 512-768; a matrix that stays in the cache
// loses a few %).
constexpr int64_t kPrefetchWeights = 640;

// The exponent's bit 0 (as bit 7 of the low byte) and bits 1-7 (bits 0-6 of the high byte) of
// each code's weight; code 0 (escape) gives 0 and is patched.
// Each table is repeated in the four 128-bit lanes vpshufb looks up in.
struct ExponentTables {
  alignas(64) uint8_t low[64] = {};
  alignas(64) uint8_t high[64] = {};
  explicit ExponentTables(int32_t window_start) {
    for (int c = 1; c < 16; ++c) {
      const uint32_t e = static_cast<uint32_t>(window_start + c - 1);
      for (int lane = 0; lane < 4; ++lane) {
        low[16 * lane + c] = static_cast<uint8_t>((e & 1) << 7);
        high[16 * lane + c] = static_cast<uint8_t>(e >> 1);
      }
    }
  }
};

// Within a block of 64: the weight lane `lane` of decoded vector F`f` holds, and the vector that
// holds weight p (its lane is Ew4GemvLane(p)).
constexpr int WeightOf(int f, int lane) {
  return 16 * (lane >> 2) + 8 * (f >> 1) + 2 * (lane & 3) + (f & 1);
}
constexpr int VectorOf(int64_t p) { return static_cast<int>(((p >> 2) & 2) | (p & 1)); }

// x (m, k) -> (m, k) with each full block of 64 in the decoded vectors' order: position
// 16 * f + lane of a block holds x at WeightOf(f, lane). The tail keeps its order.
// The result starts on a 64-byte line (x rows whose k is a multiple of 16 then keep every vector
// load within one line: a split load costs two, and batch 8 makes 32 x loads per 64 weights).
const float* Permuted(const float* x, int64_t m, int64_t k, std::vector<float>* out) {
  out->resize(static_cast<size_t>(m * k + 15));
  float* base = out->data();
  base += (16 - reinterpret_cast<uintptr_t>(base) / sizeof(float) % 16) % 16;
  const int64_t full = k / 64 * 64;
  for (int64_t b = 0; b < m; ++b) {
    const float* xb = x + b * k;
    float* o = base + b * k;
    for (int64_t blk = 0; blk < full; blk += 64) {
      for (int f = 0; f < 4; ++f) {
        for (int lane = 0; lane < 16; ++lane) o[blk + 16 * f + lane] = xb[blk + WeightOf(f, lane)];
      }
    }
    std::memcpy(o + full, xb + full, 4 * (k - full));
  }
  return base;
}

// One row's escapes: the next one not yet patched, its column (kNone past the row's list, so a
// block tests one compare), and the end of the row's list.
struct EscapeCursor {
  static constexpr int64_t kNone = INT64_MAX;
  const uint32_t* columns = nullptr;
  const uint16_t* values = nullptr;
  uint32_t next = 0, end = 0;
  int64_t next_column = kNone;
  static EscapeCursor Of(const Ew4View& w, int64_t row) {
    EscapeCursor c{w.escape_columns, w.escape_values, w.escape_offsets[row],
                   w.escape_offsets[row + 1]};
    c.next_column = c.next < c.end ? c.columns[c.next] : kNone;
    return c;
  }
  bool Before(int64_t col) const { return next_column < col; }
  // The column and value of the next escape; moves past it.
  std::pair<int64_t, uint16_t> Take() {
    const std::pair<int64_t, uint16_t> e{next_column, values[next]};
    ++next;
    next_column = next < end ? columns[next] : kNone;
    return e;
  }
};

// The end of a row after its full blocks: the tail in order, then Ew4GemvFinish.
template <typename Weight>
float FinishRow(float (&acc)[kEw4GemvLanes], int64_t full, int64_t k, const float* xb,
                const Weight& weight, const uint16_t* bias, int64_t row) {
  for (int64_t p = full; p < k; ++p) {
    float& a = acc[Ew4GemvLane(p)];
    a = std::fma(Bf16ToFloat(weight(p)), xb[p], a);
  }
  return Ew4GemvFinish(acc, bias, row);
}

// One ew4 row's fields and escapes.
struct Ew4Row {
  const uint8_t* sm;
  const uint8_t* codes;
  EscapeCursor esc;
  static Ew4Row Of(const Ew4View& w, int64_t j) {
    return {w.sign_mantissa + j * w.cols, w.codes + j * Ew4RowCodeBytes(w.cols),
            EscapeCursor::Of(w, j)};
  }
};

// Starts loading the bytes of the block at `at` from row r (prefetches never fault).
inline void PrefetchBlock(const Ew4View& w, const Ew4Row& r, PrefetchPoint at) {
  _mm_prefetch(reinterpret_cast<const char*>(r.sm + at.rows * w.cols + at.column), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(r.codes + at.rows * Ew4RowCodeBytes(w.cols) +
                                             at.column / 2),
               _MM_HINT_T0);
}

// Weight p of row j (the tail past the full blocks).
uint16_t Ew4WeightAt(const Ew4View& w, const Ew4Row& r, int64_t j, int64_t p) {
  const uint32_t code = Ew4CodeAt(r.codes, p);
  if (code != 0) return Ew4Combine(w.window_start, code, r.sm[p]);
  for (uint32_t e = w.escape_offsets[j]; e < w.escape_offsets[j + 1]; ++e) {
    if (w.escape_columns[e] == p) return w.escape_values[e];
  }
  return 0;  // unreachable for a validated view
}

// ---- AVX-512 ----

// Decoded block: four vectors F0..F3 of 16 weights (see the header).
struct Block512 {
  __m512 f[4];
};

DF11_TARGET_AVX512 inline void Patch512(Block512* blk, int64_t p, uint16_t value) {
  const __m512 v = _mm512_castsi512_ps(_mm512_set1_epi32(static_cast<int32_t>(value) << 16));
  const __mmask16 lane = static_cast<__mmask16>(1u << Ew4GemvLane(p));
  const int f = VectorOf(p);
  for (int i = 0; i < 4; ++i) blk->f[i] = _mm512_mask_mov_ps(blk->f[i], i == f ? lane : 0, v);
}

struct Ew4Source512 {
  const Ew4View* w;
  __m512i low, high;
  explicit DF11_TARGET_AVX512 Ew4Source512(const Ew4View& view, const ExponentTables& t) : w(&view) {
    low = _mm512_load_si512(t.low);
    high = _mm512_load_si512(t.high);
  }
  using Row = Ew4Row;
  Row RowAt(int64_t j) const { return Ew4Row::Of(*w, j); }
  void Prefetch(const Row& r, PrefetchPoint at) const { PrefetchBlock(*w, r, at); }
  DF11_TARGET_AVX512 inline Block512 Load(Row& r, int64_t blk) const {
    // Both halves hold the 32 code bytes; the high half (weights 32-63) shifted by a nibble.
    const __m512i packed = _mm512_broadcast_i64x4(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r.codes + blk / 2)));
    const __m512i codes = _mm512_and_si512(
        _mm512_mask_srli_epi16(packed, 0xFFFF0000u, packed, 4), _mm512_set1_epi8(0x0F));
    const __m512i sm = _mm512_loadu_si512(r.sm + blk);
    // (sm & mask) | table[code]: ternary logic 0xEA = (A & B) | C.
    const __m512i lb = _mm512_ternarylogic_epi32(sm, _mm512_set1_epi8(0x7F),
                                                 _mm512_shuffle_epi8(low, codes), 0xEA);
    const __m512i hb = _mm512_ternarylogic_epi32(sm, _mm512_set1_epi8(static_cast<char>(0x80)),
                                                 _mm512_shuffle_epi8(high, codes), 0xEA);
    // BF16 words: 128-bit lane q of w0 holds weights 16 q .. 16 q + 7, of w1 16 q + 8 .. 16 q + 15.
    const __m512i w0 = _mm512_unpacklo_epi8(lb, hb), w1 = _mm512_unpackhi_epi8(lb, hb);
    const __m512i odd = _mm512_set1_epi32(static_cast<int32_t>(0xFFFF0000u));
    Block512 b{{_mm512_castsi512_ps(_mm512_slli_epi32(w0, 16)),
                _mm512_castsi512_ps(_mm512_and_si512(w0, odd)),
                _mm512_castsi512_ps(_mm512_slli_epi32(w1, 16)),
                _mm512_castsi512_ps(_mm512_and_si512(w1, odd))}};
    while (r.esc.Before(blk + 64)) [[unlikely]] {
      const auto [column, value] = r.esc.Take();
      Patch512(&b, column - blk, value);
    }
    return b;
  }
  uint16_t At(const Row& r, int64_t j, int64_t p) const { return Ew4WeightAt(*w, r, j, p); }
};

struct Bf16Source512 {
  const uint16_t* w;
  int64_t k;
  __m512i index[4];
  DF11_TARGET_AVX512 Bf16Source512(const uint16_t* weights, int64_t cols) : w(weights), k(cols) {
    alignas(64) uint16_t idx[4][32];
    for (int f = 0; f < 4; ++f) {
      for (int e = 0; e < 16; ++e) {
        idx[f][2 * e] = 0;
        idx[f][2 * e + 1] = static_cast<uint16_t>(WeightOf(f, e));
      }
      index[f] = _mm512_load_si512(idx[f]);
    }
  }
  struct Row {
    const uint16_t* w;
  };
  Row RowAt(int64_t j) const { return {w + j * k}; }
  void Prefetch(const Row& r, PrefetchPoint at) const {
    _mm_prefetch(reinterpret_cast<const char*>(r.w + at.rows * k + at.column), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(r.w + at.rows * k + at.column + 32), _MM_HINT_T0);
  }
  DF11_TARGET_AVX512 inline Block512 Load(Row& r, int64_t blk) const {
    const __m512i a = _mm512_loadu_si512(r.w + blk), b = _mm512_loadu_si512(r.w + blk + 32);
    Block512 out;
    for (int f = 0; f < 4; ++f) {
      out.f[f] = _mm512_castsi512_ps(
          _mm512_maskz_permutex2var_epi16(0xAAAAAAAAu, a, index[f], b));
    }
    return out;
  }
  uint16_t At(const Row& r, int64_t, int64_t p) const { return r.w[p]; }
};

// Rows[0, R) (consecutive rows) for all M batches over the full blocks [blk0, blk1): R * M
// accumulator vectors, loaded from and stored back to their partial sums (row r, batch b at
// partial + 16 * (r * M + b)), so a row's sums go on in the same order across k-chunks.
template <int M, int R, typename Source>
DF11_TARGET_AVX512 void Rows512(const Source& src, const float* xp, int64_t k,
                                typename Source::Row* rows, float* partial, int64_t blk0,
                                int64_t blk1) {
  __m512 acc[R][M];
  for (int r = 0; r < R; ++r) {
    for (int b = 0; b < M; ++b) acc[r][b] = _mm512_load_ps(partial + 16 * (r * M + b));
  }
  for (int64_t blk = blk0; blk < blk1; blk += 64) {
    const PrefetchPoint ahead = PrefetchAhead(blk, kPrefetchWeights, blk0, blk1, R);
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      src.Prefetch(rows[r], ahead);
      const Block512 w = src.Load(rows[r], blk);
      #pragma GCC unroll 8
      for (int f = 0; f < 4; ++f) {
        #pragma GCC unroll 8
        for (int b = 0; b < M; ++b) {
          acc[r][b] = _mm512_fmadd_ps(w.f[f], _mm512_loadu_ps(xp + b * k + blk + 16 * f),
                                      acc[r][b]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int b = 0; b < M; ++b) _mm512_store_ps(partial + 16 * (r * M + b), acc[r][b]);
  }
}

// ---- AVX2 ----

// Decoded half block (weights 32 * h .. 32 * h + 31): F0..F3 of 8 weights, lane l of Ff holding
// weight 32 * h + WeightOf(f, l) (lanes 8 h .. 8 h + 7 of the AVX-512 order).
struct Half256 {
  __m256 f[4];
};

DF11_TARGET_AVX2 inline void Patch256(Half256* half, int64_t p, uint16_t value) {
  const __m256 v = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int32_t>(value) << 16));
  const __m256i lane = _mm256_cmpeq_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                                          _mm256_set1_epi32(Ew4GemvLane(p) & 7));
  const int f = VectorOf(p);
  half->f[f] = _mm256_blendv_ps(half->f[f], v, _mm256_castsi256_ps(lane));
}

struct Ew4Source256 {
  const Ew4View* w;
  __m256i low, high;
  DF11_TARGET_AVX2 Ew4Source256(const Ew4View& view, const ExponentTables& t) : w(&view) {
    low = _mm256_load_si256(reinterpret_cast<const __m256i*>(t.low));
    high = _mm256_load_si256(reinterpret_cast<const __m256i*>(t.high));
  }
  using Row = Ew4Row;
  Row RowAt(int64_t j) const { return Ew4Row::Of(*w, j); }
  void Prefetch(const Row& r, PrefetchPoint at) const { PrefetchBlock(*w, r, at); }
  DF11_TARGET_AVX2 inline void Load(Row& r, int64_t blk, Half256 (&out)[2]) const {
    const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r.codes + blk / 2));
    const __m256i nibble = _mm256_set1_epi8(0x0F);
    const __m256i codes[2] = {_mm256_and_si256(packed, nibble),
                              _mm256_and_si256(_mm256_srli_epi16(packed, 4), nibble)};
    const __m256i odd = _mm256_set1_epi32(static_cast<int32_t>(0xFFFF0000u));
    for (int h = 0; h < 2; ++h) {
      const __m256i sm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r.sm + blk + 32 * h));
      const __m256i lb = _mm256_or_si256(_mm256_and_si256(sm, _mm256_set1_epi8(0x7F)),
                                         _mm256_shuffle_epi8(low, codes[h]));
      const __m256i hb =
          _mm256_or_si256(_mm256_and_si256(sm, _mm256_set1_epi8(static_cast<char>(0x80))),
                          _mm256_shuffle_epi8(high, codes[h]));
      const __m256i w0 = _mm256_unpacklo_epi8(lb, hb), w1 = _mm256_unpackhi_epi8(lb, hb);
      out[h].f[0] = _mm256_castsi256_ps(_mm256_slli_epi32(w0, 16));
      out[h].f[1] = _mm256_castsi256_ps(_mm256_and_si256(w0, odd));
      out[h].f[2] = _mm256_castsi256_ps(_mm256_slli_epi32(w1, 16));
      out[h].f[3] = _mm256_castsi256_ps(_mm256_and_si256(w1, odd));
    }
    while (r.esc.Before(blk + 64)) [[unlikely]] {
      const auto [column, value] = r.esc.Take();
      const int64_t p = column - blk;
      Patch256(&out[p / 32], p, value);
    }
  }
  uint16_t At(const Row& r, int64_t j, int64_t p) const { return Ew4WeightAt(*w, r, j, p); }
};

struct Bf16Source256 {
  const uint16_t* w;
  int64_t k;
  struct Row {
    const uint16_t* w;
  };
  Row RowAt(int64_t j) const { return {w + j * k}; }
  void Prefetch(const Row& r, PrefetchPoint at) const {
    _mm_prefetch(reinterpret_cast<const char*>(r.w + at.rows * k + at.column), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(r.w + at.rows * k + at.column + 32), _MM_HINT_T0);
  }
  DF11_TARGET_AVX2 inline void Load(Row& r, int64_t blk, Half256 (&out)[2]) const {
    // Words 8 g .. 8 g + 7 and 16 + 8 g .. of the half; the even ones shifted up, the odd masked.
    const __m256i odd = _mm256_set1_epi32(static_cast<int32_t>(0xFFFF0000u));
    for (int h = 0; h < 2; ++h) {
      for (int g = 0; g < 2; ++g) {
        const uint16_t* p = r.w + blk + 32 * h + 8 * g;
        const __m256i words = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)), 1);
        out[h].f[2 * g] = _mm256_castsi256_ps(_mm256_slli_epi32(words, 16));
        out[h].f[2 * g + 1] = _mm256_castsi256_ps(_mm256_and_si256(words, odd));
      }
    }
  }
  uint16_t At(const Row& r, int64_t, int64_t p) const { return r.w[p]; }
};

// Rows256: Rows512 in two halves of 8 lanes (lanes 0-7 and 8-15 of each partial sum).
template <int M, int R, typename Source>
DF11_TARGET_AVX2 void Rows256(const Source& src, const float* xp, int64_t k,
                              typename Source::Row* rows, float* partial, int64_t blk0,
                              int64_t blk1) {
  __m256 acc[R][M][2];
  for (int r = 0; r < R; ++r) {
    for (int b = 0; b < M; ++b) {
      for (int h = 0; h < 2; ++h) acc[r][b][h] = _mm256_load_ps(partial + 16 * (r * M + b) + 8 * h);
    }
  }
  for (int64_t blk = blk0; blk < blk1; blk += 64) {
    const PrefetchPoint ahead = PrefetchAhead(blk, kPrefetchWeights, blk0, blk1, R);
    #pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      src.Prefetch(rows[r], ahead);
      Half256 w[2];
      src.Load(rows[r], blk, w);
      #pragma GCC unroll 8
      for (int f = 0; f < 4; ++f) {
        #pragma GCC unroll 8
        for (int b = 0; b < M; ++b) {
          #pragma GCC unroll 8
          for (int h = 0; h < 2; ++h) {
            acc[r][b][h] = _mm256_fmadd_ps(
                w[h].f[f], _mm256_loadu_ps(xp + b * k + blk + 16 * f + 8 * h), acc[r][b][h]);
          }
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int b = 0; b < M; ++b) {
      for (int h = 0; h < 2; ++h) _mm256_store_ps(partial + 16 * (r * M + b) + 8 * h, acc[r][b][h]);
    }
  }
}

// ---- dispatch ----

// The row kernels of one instruction set.
struct Avx512 {
  template <int M, int R, typename Source>
  static void Rows(const Source& src, const float* xp, int64_t k, typename Source::Row* rows,
                   float* partial, int64_t blk0, int64_t blk1) {
    Rows512<M, R>(src, xp, k, rows, partial, blk0, blk1);
  }
};
struct Avx2 {
  template <int M, int R, typename Source>
  static void Rows(const Source& src, const float* xp, int64_t k, typename Source::Row* rows,
                   float* partial, int64_t blk0, int64_t blk1) {
    Rows256<M, R>(src, xp, k, rows, partial, blk0, blk1);
  }
};

// Columns of x (full blocks) per k-chunk: from 2 rows of x on, 32 KB of them stay in L1 while
// the chunk's weight rows stream past (one pass over all of k would read x from L2 for every
// weight row at M = 8 and k = 4096; smaller chunks cost more than they save). One row of x is
// read once per group of 4 weight rows: no chunks.
template <int M>
constexpr int64_t kChunkColumns =
    M == 1 ? INT64_MAX / 2 : std::max<int64_t>(64, 8192 / M / 64 * 64);

// Rows [j0, j1) (at most kRowsPerChunk): k in chunks; within a chunk, groups of R rows
// (independent accumulation chains hide the FMA latency), then single rows. Neither changes any
// row's order: each partial sum takes its weights in increasing p.
template <typename Isa, int M, typename Source>
void RunRows(const Source& src, const float* xp, const float* x, int64_t k, const uint16_t* bias,
             float* y, int64_t n, int64_t j0, int64_t j1) {
  constexpr int R = M == 1 ? 4 : M <= 4 ? 2 : 1;
  const int64_t rows = j1 - j0;
  alignas(64) float partial[kRowsPerChunk][M][kEw4GemvLanes] = {};
  typename Source::Row row[kRowsPerChunk];
  for (int64_t i = 0; i < rows; ++i) row[i] = src.RowAt(j0 + i);
  const int64_t full = k / 64 * 64;
  for (int64_t c0 = 0; c0 < full; c0 += kChunkColumns<M>) {
    const int64_t c1 = std::min(full, c0 + kChunkColumns<M>);  // no overflow: c0 < full
    int64_t i = 0;
    for (; i + R <= rows; i += R) {
      Isa::template Rows<M, R>(src, xp, k, row + i, partial[i][0], c0, c1);
    }
    for (; i < rows; ++i) Isa::template Rows<M, 1>(src, xp, k, row + i, partial[i][0], c0, c1);
  }
  for (int64_t i = 0; i < rows; ++i) {
    for (int b = 0; b < M; ++b) {
      const auto weight = [&](int64_t p) { return src.At(row[i], j0 + i, p); };
      y[b * n + j0 + i] = FinishRow(partial[i][b], full, k, x + b * k, weight, bias, j0 + i);
    }
  }
}

template <typename Isa, typename Source>
void Run(const Source& src, const float* x, int64_t m, int64_t n, int64_t k,
         const uint16_t* bias, float* y, int threads) {
  thread_local std::vector<float> permuted;
  const float* xp = Permuted(x, m, k, &permuted);
  const auto rows = [&](int64_t j0, int64_t j1) {
    switch (m) {
      case 1: return RunRows<Isa, 1>(src, xp, x, k, bias, y, n, j0, j1);
      case 2: return RunRows<Isa, 2>(src, xp, x, k, bias, y, n, j0, j1);
      case 3: return RunRows<Isa, 3>(src, xp, x, k, bias, y, n, j0, j1);
      case 4: return RunRows<Isa, 4>(src, xp, x, k, bias, y, n, j0, j1);
      case 5: return RunRows<Isa, 5>(src, xp, x, k, bias, y, n, j0, j1);
      case 6: return RunRows<Isa, 6>(src, xp, x, k, bias, y, n, j0, j1);
      case 7: return RunRows<Isa, 7>(src, xp, x, k, bias, y, n, j0, j1);
      default: return RunRows<Isa, 8>(src, xp, x, k, bias, y, n, j0, j1);
    }
  };
  ParallelFor(n, threads, RowRunLength(n, threads, kRowsPerChunk), [&](int64_t a0, int64_t a1) {
    for (int64_t j0 = a0; j0 < a1; j0 += kRowsPerChunk) rows(j0, std::min(a1, j0 + kRowsPerChunk));
  });
}

CpuLevel Lower(CpuLevel wanted) {
  return static_cast<CpuLevel>(std::min(static_cast<int>(wanted),
                                        static_cast<int>(DetectedCpuLevel())));
}

}  // namespace
#endif  // DF11_HAS_X86_LEVELS

void Ew4GemvCpu(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                int threads, CpuLevel level) {
  DF11_CHECK(m >= 1 && m <= kEw4GemvMaxBatch);
#if DF11_HAS_X86_LEVELS
  level = Lower(level);
  const ExponentTables tables(w.window_start);

  if (level >= CpuLevel::kAvx512) {
    Run<Avx512>(Ew4Source512(w, tables), x, m, w.rows, w.cols, bias, y, threads);
  } else if (level == CpuLevel::kAvx2) {
    Run<Avx2>(Ew4Source256(w, tables), x, m, w.rows, w.cols, bias, y, threads);
  } else {
    Ew4GemvRef(x, w, bias, y, m, threads);
  }
#else
  (void)level;
  Ew4GemvRef(x, w, bias, y, m, threads);
#endif
}

void Bf16GemvOrderedCpu(const float* x, const uint16_t* w, const uint16_t* bias, float* y,
                        int64_t m, int64_t n, int64_t k, int threads, CpuLevel level) {
  DF11_CHECK(m >= 1 && m <= kEw4GemvMaxBatch);
#if DF11_HAS_X86_LEVELS
  level = Lower(level);
  if (level >= CpuLevel::kAvx512) {
    Run<Avx512>(Bf16Source512(w, k), x, m, n, k, bias, y, threads);
  } else if (level == CpuLevel::kAvx2) {
    Run<Avx2>(Bf16Source256{w, k}, x, m, n, k, bias, y, threads);
  } else {
    Bf16GemvOrderedRef(x, w, bias, y, m, n, k, threads);
  }
#else
  (void)level;
  Bf16GemvOrderedRef(x, w, bias, y, m, n, k, threads);
#endif
}

}  // namespace df11
