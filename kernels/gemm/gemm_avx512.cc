// SPDX-License-Identifier: Apache-2.0
// AVX-512 kernels of GemmBf16Cpu. One ZMM accumulator holds the 16 lanes of one (x row, w row)
// pair; a block multiplies MR rows of x by NR rows of w over all of k, widening each 16-weight
// load from BF16 to FP32 in a register (zero-extend, shift left 16) and reusing it for MR rows.
// The lane sums are then added in the order of gemm.h (8, 4, 2, 1 apart). MR x NR keeps the
// accumulators, the NR widened weights and one x vector within the 32 ZMM registers; on the
// Sapphire Rapids this was tuned on, 6 x 4 runs at ~75 % of the FMA peak with k = 1024-4096.
// GCC 12's AVX-512 intrinsics read a deliberately undefined register (_mm512_undefined_*),
// which -Wuninitialized reports at the header's lines when they are inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif

#include <cmath>

#include "kernels/common/bf16.h"
#include "kernels/common/stream_rows.h"
#include "kernels/gemm/gemm_rows.h"

namespace df11::gemm_internal {
namespace {

DF11_TARGET_AVX512 inline __m512 LoadBf16x16(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// s_l += s_{l+8}, += s_{l+4}, += s_{l+2}, s_0 += s_1: gemm.h's order.
DF11_TARGET_AVX512 inline float SumLanes(__m512 v) {
  const __m256 a = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

// y[i][j] for i < MR, j < NR: x rows at x + i * k, w rows at w + j * k, y rows at y + i * ldy.
template <int MR, int NR>
DF11_TARGET_AVX512 void Block(const float* x, const uint16_t* w, const uint16_t* bias, float* y,
                              int64_t ldy, int64_t k) {
  __m512 acc[MR][NR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  }
  const int64_t k16 = k & ~int64_t{15};
  for (int64_t p = 0; p < k16; p += 16) {
    if ((p & 31) == 0) {  // once per 64-byte line of each row
      const PrefetchPoint ahead = PrefetchAhead(p, kPrefetchWeights, 0, k, NR);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) {
        _mm_prefetch(reinterpret_cast<const char*>(w + (j + ahead.rows) * k + ahead.column),
                     _MM_HINT_T0);
      }
    }
    __m512 wv[NR];
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) wv[j] = LoadBf16x16(w + j * k + p);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + i * k + p);
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      float s = SumLanes(acc[i][j]);
      for (int64_t t = k16; t < k; ++t) s = std::fma(x[i * k + t], Bf16ToFloat(w[j * k + t]), s);
      if (bias != nullptr) s += Bf16ToFloat(bias[j]);
      y[i * ldy + j] = s;
    }
  }
}

// Rows [r0, r1) of w against x rows [i0, i0 + MR).
template <int MR, int NR>
DF11_TARGET_AVX512 void Panel(const GemmProblem& p, int64_t i0, int64_t r0, int64_t r1) {
  const float* x = p.x + i0 * p.k;
  float* y = p.y + i0 * p.n;
  auto at_bias = [&p](int64_t j) { return p.bias != nullptr ? p.bias + j : nullptr; };
  int64_t j = r0;
  for (; j + NR <= r1; j += NR) Block<MR, NR>(x, p.w + j * p.k, at_bias(j), y + j, p.n, p.k);
  for (; j < r1; ++j) Block<MR, 1>(x, p.w + j * p.k, at_bias(j), y + j, p.n, p.k);
}

// A panel of `rows` (1-7) rows of x at i0.
DF11_TARGET_AVX512 void PanelOf(int64_t rows, const GemmProblem& p, int64_t i0, int64_t r0,
                                int64_t r1) {
  switch (rows) {
    case 1: Panel<1, 8>(p, i0, r0, r1); break;
    case 2: Panel<2, 6>(p, i0, r0, r1); break;
    case 3: Panel<3, 4>(p, i0, r0, r1); break;
    case 4: Panel<4, 4>(p, i0, r0, r1); break;
    case 5: Panel<5, 4>(p, i0, r0, r1); break;
    case 6: Panel<6, 4>(p, i0, r0, r1); break;
    default: Panel<7, 4>(p, i0, r0, r1); break;
  }
}

}  // namespace

// Panels of 6 rows of x (6 x 4 blocks measured fastest), except that 8 rows (a common decode
// batch) go as 4 + 4 and 7 as one panel: 8 x N blocks run far slower than 6 x 4 here.
DF11_TARGET_AVX512 void GemmTileAvx512(const GemmProblem& p, int64_t x_begin, int64_t x_end,
                                       int64_t w_begin, int64_t w_end) {
  int64_t i = x_begin;
  if (x_end - i == 8) {
    PanelOf(4, p, i, w_begin, w_end);
    PanelOf(4, p, i + 4, w_begin, w_end);
    return;
  }
  if (x_end - i == 7) {
    PanelOf(7, p, i, w_begin, w_end);
    return;
  }
  for (; i + 6 <= x_end; i += 6) PanelOf(6, p, i, w_begin, w_end);
  if (i < x_end) PanelOf(x_end - i, p, i, w_begin, w_end);
}

}  // namespace df11::gemm_internal
