// SPDX-License-Identifier: Apache-2.0
// Elementwise activations of the transformer block, FP32: the SwiGLU gate of the MLP
// (down_proj(silu(gate_proj(x)) * up_proj(x)), silu(g) = g * sigmoid(g)) and the residual add.
#pragma once

#include <cstdint>

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

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

#if DF11_WITH_CUDA
// The same on `stream`, device pointers. SwiGluCuda uses CUDA's expf (<= 2 ulp), so it differs
// from SwiGluRef by a few ulps; AddCuda is bit-identical to AddRef.
void SwiGluCuda(const float* gate,  // (n)
                const float* up,    // (n)
                float* out,         // (n)
                int64_t n, cudaStream_t stream);
void AddCuda(float* x,        // (n)
             const float* y,  // (n)
             int64_t n, cudaStream_t stream);
#endif

}  // namespace df11
