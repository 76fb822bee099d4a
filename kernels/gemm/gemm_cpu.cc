// SPDX-License-Identifier: Apache-2.0
// GemmBf16Cpu: picks the kernels of ActiveCpuLevel() and hands the threads tiles of y: up to
// kTileXBytes of x rows (kept in a core's L2 while it works through w) by kTileWRows rows of w
// (a multiple of every kernel's block), numbered x-tile-major so that consecutive tiles share
// their x rows. With a short batch (decode) there is one x tile and the tiles are a few long row
// ranges of w per thread.
#include <algorithm>

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
constexpr int64_t kStreamingBatch = 8;

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
  // w rows per tile: a decode batch streams w from memory, so each thread takes a few long runs
  // of rows (kernels/common/stream_rows.h); larger batches are compute-bound and balance better
  // with many small tiles. A run is a whole number of the kernels' blocks of w rows: 8 or 4 at
  // batch 1, 4, 6 or 8 (lcm 24) at batches 2-8.
  const int64_t w_block = m == 1 ? 8 : 24;
  const int64_t tile_w = m <= kStreamingBatch ? RowRunLength(n, threads, w_block) : kTileWRows;
  const int64_t w_tiles = (n + tile_w - 1) / tile_w;
  ParallelFor(x_tiles * w_tiles, threads, 1,
              [&p, tile, tile_x, tile_w, w_tiles](int64_t t0, int64_t t1) {
                for (int64_t t = t0; t < t1; ++t) {
                  const int64_t i0 = (t / w_tiles) * tile_x, j0 = (t % w_tiles) * tile_w;
                  tile(p, i0, std::min(p.m, i0 + tile_x), j0, std::min(p.n, j0 + tile_w));
                }
              });
}

}  // namespace df11
