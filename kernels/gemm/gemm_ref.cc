// SPDX-License-Identifier: Apache-2.0
// m > 1: w is cut into fixed tiles of kTileRows rows; each tile is widened to FP32 in a per-thread
// buffer and multiplied with OpenBLAS (single-threaded, so the tiles, not BLAS, carry the
// parallelism and every output element comes from the same call whatever `threads` is).
// m == 1: a memory-bound GEMV reading BF16 directly, kLanes independent FP32 partial sums per row
// (a fixed order, so the vectorizer needs no reassociation) summed pairwise at the end.
#include "kernels/gemm/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <mutex>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"

namespace df11 {
namespace {

constexpr int64_t kTileRows = 128;  // rows of w per BLAS call (k = 8192: 4 MiB of FP32)
constexpr int64_t kGemvRows = 16;   // rows of w per ParallelFor chunk in the GEMV
constexpr int kLanes = 16;          // independent partial sums per GEMV row

void UseSingleThreadedBlas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

float GemvRow(const float* x, const uint16_t* w_row, int64_t k) {
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= k; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) acc[l] += x[i + l] * Bf16ToFloat(w_row[i + l]);
  }
  for (int l = 0; i < k; ++i, ++l) acc[l] += x[i] * Bf16ToFloat(w_row[i]);
  for (int width = kLanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) acc[l] += acc[l + width];
  }
  return acc[0];
}

void Gemv(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t n,
          int64_t k, int threads) {
  ParallelFor(n, threads, kGemvRows, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      float v = GemvRow(x, w + j * k, k);
      y[j] = bias != nullptr ? v + Bf16ToFloat(bias[j]) : v;
    }
  });
}

void TiledGemm(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t m,
               int64_t n, int64_t k, int threads) {
  UseSingleThreadedBlas();
  const int64_t n_tiles = (n + kTileRows - 1) / kTileRows;
  ParallelFor(n_tiles, threads, 1, [&](int64_t tile_begin, int64_t tile_end) {
    thread_local std::vector<float> w_tile;  // (kTileRows, k)
    w_tile.resize(static_cast<size_t>(std::min(n, kTileRows) * k));
    for (int64_t t = tile_begin; t < tile_end; ++t) {
      const int64_t row0 = t * kTileRows;
      const int64_t rows = std::min(kTileRows, n - row0);
      const uint16_t* src = w + row0 * k;
      for (int64_t i = 0; i < rows * k; ++i) w_tile[i] = Bf16ToFloat(src[i]);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                  static_cast<int>(rows), static_cast<int>(k), 1.0f, x, static_cast<int>(k),
                  w_tile.data(), static_cast<int>(k), 0.0f, y + row0, static_cast<int>(n));
      if (bias == nullptr) continue;
      for (int64_t r = 0; r < m; ++r) {
        float* y_row = y + r * n + row0;
        for (int64_t j = 0; j < rows; ++j) y_row[j] += Bf16ToFloat(bias[row0 + j]);
      }
    }
  });
}

}  // namespace

void GemmBf16Ref(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t m,
                 int64_t n, int64_t k, int threads) {
  DF11_CHECK(m >= 1 && n >= 1 && k >= 1);
  DF11_CHECK(x != nullptr && w != nullptr && y != nullptr);
  // cblas takes int dimensions and leading strides.
  DF11_CHECK(m <= INT32_MAX && n <= INT32_MAX && k <= INT32_MAX);
  if (m == 1) {
    Gemv(x, w, bias, y, n, k, threads);
  } else {
    TiledGemm(x, w, bias, y, m, n, k, threads);
  }
}

}  // namespace df11
