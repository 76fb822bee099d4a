// SPDX-License-Identifier: Apache-2.0
// The per-element gate activations and the logit soft cap, shared by the references and the CUDA
// kernels (host: the C library's expf/tanhf/erff; device: CUDA's, within 2 ulp). Operation order
// as torch's CPU kernels, float32 throughout.
#pragma once

#include <math.h>

#include "kernels/common/host_device.h"

namespace df11 {

// g / (1 + exp(-g)): exp(-g) = inf for large negative g gives a signed zero, never NaN.
DF11_HD float Silu(float g) { return g / (1.0f + expf(-g)); }

// torch's gelu(approximate="tanh").
DF11_HD float GeluTanh(float g) {
  const float kBeta = 0.7978845608028654f;  // sqrt(2) * (2 / sqrt(pi)) * 0.5
  const float kKappa = 0.044715f;
  const float cube = g * g * g;
  const float inner = kBeta * (g + kKappa * cube);
  return 0.5f * g * (1.0f + tanhf(inner));
}

// torch's gelu(approximate="none"): the exact erf form.
DF11_HD float GeluErf(float g) {
  const float kAlpha = 0.7071067811865476f;  // M_SQRT1_2
  return g * 0.5f * (1.0f + erff(g * kAlpha));
}

// Gemma's soft cap as transformers computes it: (x / cap), tanh, * cap.
DF11_HD float Softcap(float x, float cap) { return tanhf(x / cap) * cap; }

}  // namespace df11
