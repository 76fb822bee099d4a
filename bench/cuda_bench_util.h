// SPDX-License-Identifier: Apache-2.0
// Helpers the CUDA benchmarks share: device buffers (never freed: a benchmark process is short)
// and timing of a kernel sequence replayed from one CUDA graph.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/common/cuda_check.h"

namespace df11::bench {

// `count` elements (at least one) of device memory.
template <typename T>
T* DeviceAlloc(int64_t count) {
  T* p = nullptr;
  DF11_CUDA_CHECK(
      cudaMalloc(reinterpret_cast<void**>(&p), std::max<int64_t>(1, count) * sizeof(T)));
  return p;
}

// A device copy of `host`.
template <typename T>
T* Upload(const std::vector<T>& host) {
  T* p = DeviceAlloc<T>(static_cast<int64_t>(host.size()));
  DF11_CUDA_CHECK(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

// Microseconds per launch of `enqueue` captured `reps` times in one graph (after one warm-up
// replay).
template <typename F>
double TimeGraph(cudaStream_t stream, int reps, F enqueue) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  DF11_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < reps; ++i) enqueue();
  DF11_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  DF11_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  DF11_CUDA_CHECK(cudaGraphLaunch(exec, stream));  // warm-up
  cudaEvent_t start, stop;
  DF11_CUDA_CHECK(cudaEventCreate(&start));
  DF11_CUDA_CHECK(cudaEventCreate(&stop));
  DF11_CUDA_CHECK(cudaEventRecord(start, stream));
  DF11_CUDA_CHECK(cudaGraphLaunch(exec, stream));
  DF11_CUDA_CHECK(cudaEventRecord(stop, stream));
  DF11_CUDA_CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  DF11_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  DF11_CUDA_CHECK(cudaEventDestroy(start));
  DF11_CUDA_CHECK(cudaEventDestroy(stop));
  DF11_CUDA_CHECK(cudaGraphExecDestroy(exec));
  DF11_CUDA_CHECK(cudaGraphDestroy(graph));
  return 1000.0 * ms / reps;
}

}  // namespace df11::bench
