// SPDX-License-Identifier: Apache-2.0
// ArgmaxCuda: one block of kThreads. Each thread scans a strided slice keeping its first maximum,
// then warp shuffles and one shared-memory pass combine (value, index) pairs, preferring the
// larger value and, on equal values, the lower index. NaNs are skipped; when every logit is NaN
// no candidate survives and the result is 0, as ArgmaxRef.
#include "kernels/common/check.h"
#include "kernels/common/cuda_check.h"
#include "kernels/sampling/sampling.h"

namespace df11 {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;

struct Candidate {
  float value;
  int32_t index;  // -1: none yet
};

__device__ __forceinline__ Candidate Better(Candidate a, Candidate b) {
  if (b.index < 0) return a;
  if (a.index < 0) return b;
  if (b.value > a.value || (b.value == a.value && b.index < a.index)) return b;
  return a;
}

__device__ __forceinline__ Candidate WarpBest(Candidate c) {
  for (int offset = 16; offset > 0; offset /= 2) {
    Candidate other;
    other.value = __shfl_xor_sync(0xFFFFFFFFu, c.value, offset);
    other.index = __shfl_xor_sync(0xFFFFFFFFu, c.index, offset);
    c = Better(c, other);
  }
  return c;
}

__global__ void __launch_bounds__(kThreads)
    ArgmaxKernel(const float* __restrict__ logits, int64_t n, int32_t* __restrict__ index) {
  __shared__ Candidate warp_best[kWarps];
  Candidate best{0.0f, -1};
  for (int64_t i = threadIdx.x; i < n; i += kThreads) {  // i rises: the first maximum stays
    const float v = logits[i];
    if (isnan(v)) continue;
    if (best.index < 0 || v > best.value) best = {v, static_cast<int32_t>(i)};
  }
  best = WarpBest(best);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) warp_best[warp] = best;
  __syncthreads();
  if (warp == 0) {
    best = WarpBest(lane < kWarps ? warp_best[lane] : Candidate{0.0f, -1});
    if (lane == 0) *index = best.index < 0 ? 0 : best.index;
  }
}

}  // namespace

void ArgmaxCuda(const float* logits, int64_t n, int32_t* index, cudaStream_t stream) {
  DF11_CHECK(n >= 1 && n <= INT32_MAX);
  DF11_CHECK(logits != nullptr && index != nullptr);
  ArgmaxKernel<<<1, kThreads, 0, stream>>>(logits, n, index);
  DF11_CUDA_CHECK_LAUNCH();
}

}  // namespace df11
