// SPDX-License-Identifier: Apache-2.0
// Per-GPU memory plan of a tensor- x pipeline-parallel deployment, from config.json alone:
// compressed weights of the worst rank, two BF16 scratch buffers for its largest layer slice,
// an activation workspace, and what is left for the KV cache (tokens, and sequences at a context).
// Sliding-window layers keep only their window (kv_cache.h): a sequence costs less than its
// positions times the full per-token bytes, and the plan says by how much.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/core/status.h"
#include "runtime/formats/model_config.h"

namespace df11 {

struct MemoryPlanOptions {
  int tp = 1;
  int pp = 1;
  double gpu_memory_bytes = 80.0 * (1 << 30);  // per GPU (an "80 GB" H100 has 80 GiB)
  double memory_fraction = 0.90;    // --gpu-memory-fraction: share of the GPU the runtime may use
  bool df11 = true;                 // false: BF16 weights
  double df11_bits_per_weight = 10.87;  // measured on Llama 3.1 405B (spec section 4)
  int64_t context = 0;              // tokens per sequence; 0: max_position_embeddings
  int64_t workspace_tokens = 2048;  // tokens of activations one step may hold
};

struct MemoryPlan {
  int64_t parameters = 0;            // whole model
  double weight_bytes = 0;           // worst rank: its layers, embedding / LM head slices, norms
  double scratch_bytes = 0;          // two decode buffers for its largest layer slice (DF11 only)
  double workspace_bytes = 0;        // activations of one step
  double kv_bytes_per_token = 0;     // this rank's layers and kv heads, FP32 K and V (as stored)
  double budget_bytes = 0;           // gpu_memory_bytes * memory_fraction
  double kv_bytes = 0;               // what is left for the cache
  int64_t kv_tokens = 0;             // positions at kv_bytes_per_token (no window saving)
  int64_t context = 0;
  // One sequence of `context` tokens on the worst rank: its cache with sliding-window layers
  // keeping only their window, and without that saving (equal when no layer slides).
  double sequence_kv_bytes = 0;
  double sequence_kv_bytes_full = 0;
  int64_t window_layers = 0;         // sliding-window layers of the model
  // Tokens one sequence can reach in kv_bytes with the window saving (kv_tokens without it).
  int64_t kv_tokens_windowed = 0;
  int64_t max_sequences = 0;         // kv_bytes / sequence_kv_bytes
  int64_t max_sequences_full = 0;    // the same without the window saving
  bool fits = false;

  std::string Format(const MemoryPlanOptions& options) const;
};

StatusOr<MemoryPlan> PlanMemory(const ModelConfig& config, const MemoryPlanOptions& options);

// One rank's GPU from measured sizes (what the CUDA backend allocates), printed at start-up.
struct DeviceMemoryInputs {
  int64_t device_total_bytes = 0;  // cudaMemGetInfo's total
  double memory_fraction = 0.90;   // --gpu-memory-fraction
  int64_t compressed_bytes = 0;    // DF11 units resident on the device
  int64_t plain_bytes = 0;         // BF16 matrices (a BF16 model, or tensors left uncompressed)
  int64_t small_bytes = 0;         // norms and biases
  int64_t layer_scratch_bytes = 0; // both layer decode buffers
  int64_t head_scratch_bytes = 0;  // the LM-head decode chunk
  int64_t activation_bytes = 0;    // activations and workspaces for the largest step
  int64_t sampling_bytes = 0;      // the device sampler's workspace for the largest step
  int64_t kv_bytes_per_token = 0;  // this rank's layers and kv heads, FP32 K and V
  int64_t context = 0;             // tokens per sequence, for the concurrency figure
};

struct DeviceMemoryPlan {
  DeviceMemoryInputs in;
  int64_t budget_bytes = 0;  // memory_fraction * device_total_bytes
  int64_t fixed_bytes = 0;   // everything but the KV cache
  int64_t kv_bytes = 0;      // budget - fixed
  int64_t kv_tokens = 0;
  int64_t max_sequences = 0;  // kv_tokens / context

  // Weights on the device plus the two layer scratch buffers.
  int64_t weight_memory_bytes() const {
    return in.compressed_bytes + in.plain_bytes + in.small_bytes + in.layer_scratch_bytes;
  }
  std::string Format() const;
};

// ResourceExhausted-style FailedPrecondition naming the sizes when the weights, scratch and
// activations do not fit in the budget (no room for a single KV position).
StatusOr<DeviceMemoryPlan> PlanDeviceMemory(const DeviceMemoryInputs& inputs);

}  // namespace df11
