// SPDX-License-Identifier: Apache-2.0
// AVX2 + FMA kernels of GemmBf16Cpu: as gemm_avx512.cc with each (x row, w row) pair's 16 lanes
// in two YMM accumulators (lanes 0-7 and 8-15), each half of the weights widened just before the
// FMAs that use it, so MR x NR fits the 16 YMM registers.
#include <immintrin.h>

#include <cmath>

#include "kernels/common/bf16.h"
#include "kernels/common/stream_rows.h"
#include "kernels/gemm/gemm_rows.h"

namespace df11::gemm_internal {
namespace {

DF11_TARGET_AVX2 inline __m256 LoadBf16x8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Lanes 0-7 in lo, 8-15 in hi; added in gemm.h's order (8, 4, 2, 1 apart).
DF11_TARGET_AVX2 inline float SumLanes(__m256 lo, __m256 hi) {
  const __m256 a = _mm256_add_ps(lo, hi);
  const __m128 b = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 c = _mm_add_ps(b, _mm_movehl_ps(b, b));
  return _mm_cvtss_f32(_mm_add_ss(c, _mm_movehdup_ps(c)));
}

template <int MR, int NR>
DF11_TARGET_AVX2 void Block(const float* x, const uint16_t* w, const uint16_t* bias, float* y,
                            int64_t ldy, int64_t k) {
  __m256 acc[MR][NR][2];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 8
    for (int j = 0; j < NR; ++j) acc[i][j][0] = acc[i][j][1] = _mm256_setzero_ps();
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
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {
      __m256 wv[NR];
#pragma GCC unroll 8
      for (int j = 0; j < NR; ++j) wv[j] = LoadBf16x8(w + j * k + p + 8 * half);
#pragma GCC unroll 8
      for (int i = 0; i < MR; ++i) {
        const __m256 xv = _mm256_loadu_ps(x + i * k + p + 8 * half);
#pragma GCC unroll 8
        for (int j = 0; j < NR; ++j) acc[i][j][half] = _mm256_fmadd_ps(xv, wv[j], acc[i][j][half]);
      }
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NR; ++j) {
      float s = SumLanes(acc[i][j][0], acc[i][j][1]);
      for (int64_t t = k16; t < k; ++t) s = std::fma(x[i * k + t], Bf16ToFloat(w[j * k + t]), s);
      if (bias != nullptr) s += Bf16ToFloat(bias[j]);
      y[i * ldy + j] = s;
    }
  }
}

template <int MR, int NR>
DF11_TARGET_AVX2 void Panel(const GemmProblem& p, int64_t i0, int64_t r0, int64_t r1) {
  const float* x = p.x + i0 * p.k;
  float* y = p.y + i0 * p.n;
  auto at_bias = [&p](int64_t j) { return p.bias != nullptr ? p.bias + j : nullptr; };
  int64_t j = r0;
  for (; j + NR <= r1; j += NR) Block<MR, NR>(x, p.w + j * p.k, at_bias(j), y + j, p.n, p.k);
  for (; j < r1; ++j) Block<MR, 1>(x, p.w + j * p.k, at_bias(j), y + j, p.n, p.k);
}

}  // namespace

DF11_TARGET_AVX2 void GemmTileAvx2(const GemmProblem& p, int64_t x_begin, int64_t x_end,
                                   int64_t w_begin, int64_t w_end) {
  int64_t i = x_begin;
  for (; i + 4 <= x_end; i += 4) Panel<4, 1>(p, i, w_begin, w_end);
  switch (x_end - i) {
    case 0: break;
    case 1: Panel<1, 4>(p, i, w_begin, w_end); break;
    case 2: Panel<2, 2>(p, i, w_begin, w_end); break;
    default: Panel<3, 2>(p, i, w_begin, w_end); break;
  }
}

}  // namespace df11::gemm_internal
