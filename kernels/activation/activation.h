// SPDX-License-Identifier: Apache-2.0
// Elementwise activations of the transformer block, FP32: the SwiGLU gate of the MLP
// (down_proj(silu(gate_proj(x)) * up_proj(x)), silu(g) = g * sigmoid(g)) and the residual add.
#pragma once

#include <cstdint>

namespace df11 {

// out[i] = silu(gate[i]) * up[i]. Requires n >= 0; out may equal gate or up.
void SwiGluRef(const float* gate,  // (n)
               const float* up,    // (n)
               float* out,         // (n)
               int64_t n);

// x[i] += y[i] (the residual connection). Requires n >= 0.
void AddRef(float* x,        // (n)
            const float* y,  // (n)
            int64_t n);

}  // namespace df11
