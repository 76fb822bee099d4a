// SPDX-License-Identifier: Apache-2.0
// The per-level kernels behind GemmBf16Ref and GemmBf16Cpu (internal to kernels/gemm): each
// computes the tile y[x_begin:x_end, w_begin:w_end), i.e. those rows of x against those rows of
// w, each element in the 16-lane order of gemm.h.
#pragma once

#include <cstdint>

#include "kernels/common/cpu_features.h"

namespace df11::gemm_internal {

// How far ahead (weights) the kernels prefetch, once per 64-byte line of each weight row, in the
// order of kernels/common/stream_rows.h: the hardware prefetcher alone leaves memory bandwidth
// unused when the weights stream from DRAM, as a model's do once it is larger than the
// last-level cache (AVX-512, batch 1, 4096 x 4096, one thread: ~12 % faster). Prefetching past
// the matrix's end is harmless: prefetches never fault.
inline constexpr int64_t kPrefetchWeights = 320;

struct GemmProblem {
  const float* x;        // (m, k)
  const uint16_t* w;     // (n, k) BF16
  const uint16_t* bias;  // (n) BF16, or nullptr
  float* y;              // (m, n)
  int64_t m, n, k;       // the tile functions use n only as y's row stride
};

using GemmTileFn = void (*)(const GemmProblem& p, int64_t x_begin, int64_t x_end,
                           int64_t w_begin, int64_t w_end);

void GemmTileScalar(const GemmProblem& p, int64_t x_begin, int64_t x_end, int64_t w_begin,
                    int64_t w_end);
#if DF11_HAS_X86_LEVELS
void GemmTileAvx2(const GemmProblem& p, int64_t x_begin, int64_t x_end, int64_t w_begin,
                  int64_t w_end);
void GemmTileAvx512(const GemmProblem& p, int64_t x_begin, int64_t x_end, int64_t w_begin,
                    int64_t w_end);
#endif

}  // namespace df11::gemm_internal
