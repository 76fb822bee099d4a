// SPDX-License-Identifier: Apache-2.0
// ForwardOptions: how a rank's forward pass runs, as the user chose it. df11-run's flags are read
// straight into it and each backend takes it whole (CpuBackendOptions::forward,
// CudaBackendOptions::forward); a backend ignores the fields that are not its.
#pragma once

#include <cstdint>

namespace df11 {

struct ForwardOptions {
  int threads = 0;             // CPU: threads for GEMMs, attention and decodes (0: all)
  bool overlap_decode = true;  // decode layer i+1's DF11 weights while layer i computes
  // CUDA: share of the decode kernel's full grid used for those overlapped decodes, (0, 1]: less
  // leaves SMs to the compute stream's kernels. With the batched attention the whole grid is
  // fastest at every batch size measured on an H100 (BENCHMARKS.md); kept for experiments.
  double decode_grid_fraction = 1.0;
  bool cuda_graph = true;           // CUDA: capture and replay steady-state steps
  int64_t max_step_tokens = 2048;   // CUDA: tokens per step the activations are sized for
                                    // (they grow if a step needs more)
  double gpu_memory_fraction = 0.9;  // CUDA: share of the device's memory to plan for
  int64_t context = 0;  // CUDA: tokens per sequence for the memory plan (0: the model's
                        // max_position_embeddings)
  int64_t kv_block_tokens = 16;  // positions per block of the paged BF16 KV cache (>= 1)
};

}  // namespace df11
