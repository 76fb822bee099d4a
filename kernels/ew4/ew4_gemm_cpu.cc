// SPDX-License-Identifier: Apache-2.0
// Ew4GemmCpu: the BF16 GEMM's tiles, each decoded from ew4 by the thread that multiplies it.
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_gemv.h"
#include "kernels/gemm/gemm.h"

namespace df11 {

void Ew4GemmCpu(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                int threads) {
  // One thread per tile: the tiles already spread over the threads.
  const GemmWeightRows rows = [&w](int64_t j0, int64_t j1, uint16_t* out) {
    Ew4DecodeRowsRef(w, j0, j1, 1, out);
  };
  GemmBf16RowsCpu(x, rows, bias, y, m, w.rows, w.cols, threads);
}

}  // namespace df11
