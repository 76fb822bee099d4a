// SPDX-License-Identifier: Apache-2.0
// The per-level kernels behind GemmBf16Ref and GemmBf16Cpu (internal to kernels/gemm): each
// computes the tile y[x_begin:x_end, w_begin:w_end), i.e. those rows of x against those rows of
// w, each element in the 16-lane order of gemm.h.
#pragma once

#include <cstdint>

#include "kernels/common/cpu_features.h"

namespace df11::gemm_internal {

struct GemmProblem {
  const float* x;        // (m, k)
  const uint16_t* w;     // (n, k) BF16
  const uint16_t* bias;  // (n) BF16, or nullptr
  float* y;              // (m, n)
  int64_t m, n, k;
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
