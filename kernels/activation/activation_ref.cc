// SPDX-License-Identifier: Apache-2.0
// The gate activations in torch's CPU operation order (float32): silu(g) = g / (1 + exp(-g)), so
// large negative g gives exp(-g) = inf and a signed zero, never NaN; gelu as x * 0.5 * (1 +
// erf(x * M_SQRT1_2)); gelu tanh as 0.5 * x * (1 + tanh(kBeta * (x + kKappa * x^3))).
#include <cmath>

#include "kernels/activation/activation.h"
#include "kernels/activation/gate_activation.h"
#include "kernels/common/check.h"

namespace df11 {

void GatedActivationRef(GateActivation act, const float* gate, const float* up, float* out,
                        int64_t n) {
  DF11_CHECK(n >= 0);
  if (n == 0) return;
  DF11_CHECK(gate != nullptr && up != nullptr && out != nullptr);
  switch (act) {
    case GateActivation::kSilu:
      for (int64_t i = 0; i < n; ++i) out[i] = Silu(gate[i]) * up[i];
      return;
    case GateActivation::kGeluTanh:
      for (int64_t i = 0; i < n; ++i) out[i] = GeluTanh(gate[i]) * up[i];
      return;
    case GateActivation::kGelu:
      for (int64_t i = 0; i < n; ++i) out[i] = GeluErf(gate[i]) * up[i];
      return;
  }
  DF11_CHECK_MSG(false, "unknown gate activation");
}

void AddRef(float* x, const float* y, int64_t n) {
  DF11_CHECK(n >= 0);
  if (n == 0) return;
  DF11_CHECK(x != nullptr && y != nullptr);
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void SoftcapRef(float* x, int64_t n, float cap) {
  DF11_CHECK(n >= 0 && cap > 0);
  if (n == 0) return;
  DF11_CHECK(x != nullptr);
  for (int64_t i = 0; i < n; ++i) x[i] = Softcap(x[i], cap);
}

}  // namespace df11
