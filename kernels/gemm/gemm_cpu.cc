// SPDX-License-Identifier: Apache-2.0
// GemmBf16Cpu: picks the kernels of ActiveCpuLevel() and hands the threads tiles of y: up to
// kTileXBytes of x rows (kept in a core's L2 while it works through w) by kTileWRows rows of w
// (a multiple of every kernel's block), numbered x-tile-major so that consecutive tiles share
// their x rows. With a short batch (decode) there is one x tile, and each thread takes a few long
// runs of consecutive w tiles.
#include <algorithm>
#include <vector>

#include "kernels/common/check.h"
#include "kernels/common/cpu_features.h"
#include "kernels/common/parallel_for.h"
#include "kernels/common/stream_rows.h"
#include "kernels/gemm/gemm.h"
#include "kernels/gemm/gemm_rows.h"

namespace df11 {
namespace {

constexpr int64_t kTileWRows = 48;
constexpr int64_t kTileXBytes = 768 << 10;
// Up to this many rows of x the weights' traffic bounds the time; their tiles of w rows (a
// multiple of every kernel's block, 4, 6 or 8 rows, and small enough for L2 while the panels
// of x rows pass over them).
constexpr int64_t kStreamingBatch = 8;
constexpr int64_t kDecodeTileWRows = 24;

gemm_internal::GemmTileFn TileFor(CpuLevel level) {
  switch (level) {
#if DF11_HAS_X86_LEVELS
    case CpuLevel::kAvx512Bf16:
    case CpuLevel::kAvx512:
      return gemm_internal::GemmTileAvx512;
    case CpuLevel::kAvx2:
      return gemm_internal::GemmTileAvx2;
#endif
    default:
      return gemm_internal::GemmTileScalar;
  }
}

}  // namespace

void GemmBf16Cpu(const float* x, const uint16_t* w, const uint16_t* bias, float* y, int64_t m,
                 int64_t n, int64_t k, int threads) {
  DF11_CHECK(m >= 1 && n >= 1 && k >= 1);
  DF11_CHECK(x != nullptr && w != nullptr && y != nullptr);
  const gemm_internal::GemmProblem p{x, w, bias, y, m, n, k};
  const gemm_internal::GemmTileFn tile = TileFor(ActiveCpuLevel());
  // x rows per tile: a multiple of 12 (the kernels' panels of 4 and 6), at least 12.
  const int64_t x_rows = std::max<int64_t>(12, kTileXBytes / (4 * k) / 12 * 12);
  const int64_t x_tiles = m <= x_rows + 8 ? 1 : (m + x_rows - 1) / x_rows;
  const int64_t tile_x = x_tiles == 1 ? m : x_rows;
  // A decode batch streams w from memory, so each thread takes a few long runs of consecutive
  // w tiles (kernels/common/stream_rows.h), of kDecodeTileWRows so that runs split evenly;
  // larger batches are compute-bound and balance better one tile at a time.
  const bool streaming = m <= kStreamingBatch;
  const int64_t tile_w = streaming ? kDecodeTileWRows : kTileWRows;
  const int64_t w_tiles = (n + tile_w - 1) / tile_w;
  const int64_t chunk = streaming ? RowRunLength(w_tiles, threads, 1) : 1;
  ParallelFor(x_tiles * w_tiles, threads, chunk,
              [&p, tile, tile_x, tile_w, w_tiles](int64_t t0, int64_t t1) {
                for (int64_t t = t0; t < t1; ++t) {
                  const int64_t i0 = (t / w_tiles) * tile_x, j0 = (t % w_tiles) * tile_w;
                  tile(p, i0, std::min(p.m, i0 + tile_x), j0, std::min(p.n, j0 + tile_w));
                }
              });
}

void GemmBf16RowsCpu(const float* x, const GemmWeightRows& rows, const uint16_t* bias, float* y,
                     int64_t m, int64_t n, int64_t k, int threads) {
  DF11_CHECK(m >= 1 && n >= 1 && k >= 1);
  DF11_CHECK(x != nullptr && rows && y != nullptr);
  const gemm_internal::GemmTileFn tile = TileFor(ActiveCpuLevel());
  const int64_t w_tiles = (n + kTileWRows - 1) / kTileWRows;
  ParallelFor(w_tiles, threads, 1, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<uint16_t> decoded;
    decoded.resize(static_cast<size_t>(kTileWRows * k));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t j0 = t * kTileWRows, j1 = std::min(n, j0 + kTileWRows);
      rows(j0, j1, decoded.data());
      // The tile as a problem of its own: w rows 0 .. j1 - j0 at `decoded`, its y columns and
      // bias at j0 (y's rows stay n apart: GemmProblem::n is also y's row stride).
      const gemm_internal::GemmProblem p{x, decoded.data(), bias != nullptr ? bias + j0 : nullptr,
                                         y + j0, m, n, k};
      tile(p, 0, m, 0, j1 - j0);
    }
  });
}

}  // namespace df11
