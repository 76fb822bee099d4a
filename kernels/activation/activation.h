// SPDX-License-Identifier: Apache-2.0
// Elementwise activations of the transformer block, FP32: the gated MLP
// (down_proj(act(gate_proj(x)) * up_proj(x))) with act the config's "hidden_act" (silu for
// SwiGLU models, GELU for GeGLU ones), the residual add, and Gemma's logit soft cap.
#pragma once

#include <cstdint>

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

// config.json "hidden_act", as transformers' ACT2FN computes it in float32 on the CPU.
enum class GateActivation {
  kSilu,      // "silu" (and its alias "swish"): g / (1 + exp(-g))
  kGeluTanh,  // "gelu_pytorch_tanh": 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3)))
  kGelu,      // "gelu": exact, g * 0.5 * (1 + erf(g / sqrt(2)))
};

// out[i] = act(gate[i]) * up[i]. Requires n >= 0; out may equal gate or up.
void GatedActivationRef(GateActivation act,
                        const float* gate,  // (n)
                        const float* up,    // (n)
                        float* out,         // (n)
                        int64_t n);

// x[i] += y[i] (the residual connection). Requires n >= 0.
void AddRef(float* x,        // (n)
            const float* y,  // (n)
            int64_t n);

// x[i] = cap * tanh(x[i] / cap) (final_logit_softcapping). Requires n >= 0, cap > 0.
void SoftcapRef(float* x,  // (n)
                int64_t n, float cap);

#if DF11_WITH_CUDA
// The same on `stream`, device pointers. CUDA's expf, tanhf and erff are within 2 ulp, so
// GatedActivationCuda differs from GatedActivationRef by a few ulps; AddCuda is bit-identical to
// AddRef.
void GatedActivationCuda(GateActivation act,
                         const float* gate,  // (n)
                         const float* up,    // (n)
                         float* out,         // (n)
                         int64_t n, cudaStream_t stream);
void AddCuda(float* x,        // (n)
             const float* y,  // (n)
             int64_t n, cudaStream_t stream);
// Within a few ulps of SoftcapRef (CUDA's tanhf).
void SoftcapCuda(float* x,  // (n)
                 int64_t n, float cap, cudaStream_t stream);
#endif

}  // namespace df11
