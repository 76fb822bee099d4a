// SPDX-License-Identifier: Apache-2.0
// Linear layer on BF16 weights: y = x · wᵀ (+ bias), as torch.nn.Linear with the weight stored
// (out_features, in_features) row-major. FP32 activations, FP32 accumulation. Results are
// bit-identical for any `threads`; the m == 1 path (GEMV) rounds differently from m > 1, so a
// row's result may depend on the batch size (allowed: see DESIGN "Lossless means").
#pragma once

#include <cstdint>

namespace df11 {

// Requires m, n, k >= 1, x, w, y non-null, y not overlapping x or w. Thread-safe.
void GemmBf16Ref(const float* x,        // (m, k)
                 const uint16_t* w,     // (n, k) BF16
                 const uint16_t* bias,  // (n) BF16, or nullptr
                 float* y,              // (m, n)
                 int64_t m, int64_t n, int64_t k, int threads);

}  // namespace df11
