// SPDX-License-Identifier: Apache-2.0
// GatedActivationCuda, AddCuda and SoftcapCuda: grid-stride elementwise loops (the grid is capped; each thread
// walks several elements). The activation is a template parameter; its body is the one the CPU
// reference runs (gate_activation.h). The multiplies are not fused with the activation's adds
// (__fmul_rn), keeping the reference's rounding.
#include <algorithm>

#include "kernels/activation/activation.h"
#include "kernels/activation/gate_activation.h"
#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"

namespace df11 {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 4096;

unsigned GridFor(int64_t n) {
  return static_cast<unsigned>(std::min(kMaxBlocks, (n + kThreads - 1) / kThreads));
}

template <GateActivation kAct>
__global__ void GatedActivationKernel(const float* gate, const float* up, float* out, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    const float g = gate[i];
    float a;
    if constexpr (kAct == GateActivation::kSilu) {
      a = Silu(g);
    } else if constexpr (kAct == GateActivation::kGeluTanh) {
      a = GeluTanh(g);
    } else {
      a = GeluErf(g);
    }
    out[i] = __fmul_rn(a, up[i]);
  }
}

__global__ void AddKernel(float* x, const float* __restrict__ y, int64_t n) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    x[i] += y[i];
  }
}

__global__ void SoftcapKernel(float* x, int64_t n, float cap) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    x[i] = Softcap(x[i], cap);
  }
}

}  // namespace

void GatedActivationCuda(GateActivation act, const float* gate, const float* up, float* out,
                         int64_t n, cudaStream_t stream) {
  DF11_CHECK(n >= 0);
  if (n == 0) return;
  DF11_CHECK(gate != nullptr && up != nullptr && out != nullptr);
  switch (act) {
    case GateActivation::kSilu:
      GatedActivationKernel<GateActivation::kSilu>
          <<<GridFor(n), kThreads, 0, stream>>>(gate, up, out, n);
      break;
    case GateActivation::kGeluTanh:
      GatedActivationKernel<GateActivation::kGeluTanh>
          <<<GridFor(n), kThreads, 0, stream>>>(gate, up, out, n);
      break;
    case GateActivation::kGelu:
      GatedActivationKernel<GateActivation::kGelu>
          <<<GridFor(n), kThreads, 0, stream>>>(gate, up, out, n);
      break;
  }
  DF11_CUDA_CHECK_LAUNCH();
}

void AddCuda(float* x, const float* y, int64_t n, cudaStream_t stream) {
  DF11_CHECK(n >= 0);
  if (n == 0) return;
  DF11_CHECK(x != nullptr && y != nullptr);
  AddKernel<<<GridFor(n), kThreads, 0, stream>>>(x, y, n);
  DF11_CUDA_CHECK_LAUNCH();
}

void SoftcapCuda(float* x, int64_t n, float cap, cudaStream_t stream) {
  DF11_CHECK(n >= 0 && cap > 0);
  if (n == 0) return;
  DF11_CHECK(x != nullptr);
  SoftcapKernel<<<GridFor(n), kThreads, 0, stream>>>(x, n, cap);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
