// SPDX-License-Identifier: Apache-2.0
// The fused GEMV's oracle: each row decoded into a small per-thread buffer, then the summation
// order of ew4_gemv.h with std::fma. The vector paths (ew4_gemv_cpu.cc) must match it bit for bit.
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/common/bf16.h"
#include "kernels/common/check.h"
#include "kernels/common/parallel_for.h"
#include "kernels/ew4/ew4_decode.h"
#include "kernels/ew4/ew4_gemv.h"
#include "kernels/ew4/ew4_gemv_order.h"

namespace df11 {
namespace {

constexpr int64_t kRowsPerChunk = 16;

// `row(j, buffer)` returns row j's BF16 weights (decoded into `buffer` (k) if need be).
template <typename Row>
void OrderedGemv(const float* x, int64_t m, int64_t n, int64_t k, const uint16_t* bias, float* y,
                 int threads, const Row& row) {
  DF11_CHECK(m >= 1 && m <= kEw4GemvMaxBatch && n >= 0 && k >= 0);
  ParallelFor(n, threads, kRowsPerChunk, [&](int64_t j0, int64_t j1) {
    std::vector<uint16_t> buffer(static_cast<size_t>(k));
    for (int64_t j = j0; j < j1; ++j) {
      const uint16_t* w = row(j, buffer.data());
      for (int64_t b = 0; b < m; ++b) {
        float acc[kEw4GemvLanes] = {};
        const float* xb = x + b * k;
        for (int64_t p = 0; p < k; ++p) {
          float& a = acc[Ew4GemvLane(p)];
          a = std::fma(Bf16ToFloat(w[p]), xb[p], a);
        }
        y[b * n + j] = Ew4GemvFinish(acc, bias, j);
      }
    }
  });
}

}  // namespace

void Ew4GemvRef(const float* x, const Ew4View& w, const uint16_t* bias, float* y, int64_t m,
                int threads) {
  OrderedGemv(x, m, w.rows, w.cols, bias, y, threads, [&](int64_t j, uint16_t* buffer) {
    Ew4DecodeRowsRef(w, j, j + 1, 1, buffer);
    return static_cast<const uint16_t*>(buffer);
  });
}

void Bf16GemvOrderedRef(const float* x, const uint16_t* w, const uint16_t* bias, float* y,
                        int64_t m, int64_t n, int64_t k, int threads) {
  OrderedGemv(x, m, n, k, bias, y, threads,
              [&](int64_t j, uint16_t*) { return w + j * k; });
}

}  // namespace df11
