// SPDX-License-Identifier: Apache-2.0
// Per-GPU memory plan of a tensor- x pipeline-parallel deployment, from config.json alone: the
// weights of the worst rank in a codec (DF11, ew4 or BF16), their decode scratch, an activation
// workspace, and what is left for the KV cache (BF16 K and V in blocks of kv_block_tokens
// positions, as both backends page it; sequences at a context); and, over the codecs, the fastest
// one that leaves the minimum KV cache (ChooseFastestCodec: `auto`). The KV figures count every
// layer's blocks (kv_blocks: blocks of every layer the worst rank holds); where layers slide, the
// window saving beside them: those layers keep their own blocks and release the ones before their
// window, so a sequence of T positions takes ceil(T / block) blocks of the full-attention layers
// and min(ceil(T / block), ceil((window + step - 2) / block) + 1) of the sliding ones (a prompt
// takes them chunk by chunk, a step of workspace_tokens positions).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/layer_weights.h"
#include "runtime/formats/model_config.h"
#include "runtime/model/kv_cache.h"

namespace df11 {

struct MemoryPlanOptions {
  int tp = 1;
  int pp = 1;
  double gpu_memory_bytes = 80.0 * (1 << 30);  // per GPU (an "80 GB" H100 has 80 GiB)
  double memory_fraction = 0.90;    // --gpu-memory-fraction: share of the GPU the runtime may use
  WeightCodec codec = WeightCodec::kDf11;  // the weights' codec
  double df11_bits_per_weight = 10.87;  // measured on Llama 3.1 405B (spec section 4)
  // 12 bits + per-row escape offsets (~0.01) + escapes at 0.05 % (trained LLM weights: 0.02-0.05 %)
  double ew4_bits_per_weight = 12.03;
  int64_t min_kv_tokens = 0;        // auto: the KV cache a codec must leave; 0: one sequence of
                                    // the context
  int64_t context = 0;              // tokens per sequence; 0: max_position_embeddings
  int64_t workspace_tokens = 2048;  // tokens of activations one step may hold
  int64_t kv_block_tokens = 16;     // --kv-block-tokens: positions per KV block
};

struct MemoryPlan {
  int64_t parameters = 0;            // whole model
  double weight_bytes = 0;           // worst rank: its layers, embedding / LM head slices, norms
  double scratch_bytes = 0;          // DF11: two decode buffers for its largest layer slice;
                                     // ew4: one for its largest matrix (steps of > 256 tokens)
  double workspace_bytes = 0;        // activations of one step
  double kv_bytes_per_token = 0;     // this rank's layers and kv heads, BF16 K and V
  double budget_bytes = 0;           // gpu_memory_bytes * memory_fraction
  double kv_bytes = 0;               // what is left for the cache
  int64_t kv_blocks = 0;             // whole blocks of kv_block_tokens positions in kv_bytes
  int64_t kv_tokens = 0;             // kv_blocks * kv_block_tokens
  int64_t context = 0;
  int64_t max_sequences = 0;         // kv_blocks / blocks of one sequence of `context` tokens
  // Sliding-window layers of the worst rank (its stage holding the most KV per sequence) and
  // their window; with them, a sequence of `context` tokens takes sequence_kv_bytes instead of
  // sequence_kv_bytes_full, and windowed_sequences of them (windowed_kv_tokens tokens) fit the
  // engine's split of the memory between the groups (SplitKvBlocks).
  int64_t window_layers = 0;
  int64_t window = 0;
  double sequence_kv_bytes = 0;
  double sequence_kv_bytes_full = 0;
  int64_t windowed_sequences = 0;
  int64_t windowed_kv_tokens = 0;
  bool fits = false;

  std::string Format(const MemoryPlanOptions& options) const;
};

StatusOr<MemoryPlan> PlanMemory(const ModelConfig& config, const MemoryPlanOptions& options);

// The codecs from the fastest to the densest: ew4 (fused decode-GEMV, 12 bits per weight), BF16,
// DF11 (Huffman decode per layer, ~10.9 bits per weight).
inline constexpr WeightCodec kCodecsBySpeed[] = {WeightCodec::kEw4, WeightCodec::kBf16,
                                                 WeightCodec::kDf11};

// How much KV cache a codec leaves.
struct CodecFit {
  WeightCodec codec = WeightCodec::kDf11;
  int64_t kv_tokens = 0;
};
// `auto`: the first codec of kCodecsBySpeed whose fit leaves at least min_kv_tokens (>= 1); when
// none does, the one that leaves the most. `fits` holds one entry per codec.
WeightCodec ChooseFastestCodec(std::span<const CodecFit> fits, int64_t min_kv_tokens);

// The plan for each codec (kCodecsBySpeed order) and auto's choice among them.
struct CodecPlans {
  std::vector<MemoryPlan> plans;  // plans[i] is for kCodecsBySpeed[i]
  WeightCodec chosen = WeightCodec::kDf11;
  int64_t min_kv_tokens = 0;      // what auto asked for
  const MemoryPlan& Of(WeightCodec codec) const;
  // The codecs' weights, scratch and KV tokens side by side, and auto's choice.
  std::string Format() const;
};
StatusOr<CodecPlans> PlanCodecs(const ModelConfig& config, const MemoryPlanOptions& options);

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
  int64_t kv_bytes_per_token = 0;  // this rank's layers and kv heads, BF16 K and V
  int64_t kv_block_tokens = 16;    // positions per KV block (--kv-block-tokens)
  int64_t context = 0;             // tokens per sequence, for the concurrency figure
  int64_t step_tokens = 0;         // most positions of a sequence one step writes (0: no limit)
  // Where the sliding-window layers keep their own blocks: every layer's window of the model (0:
  // full attention; the engine splits the budget between the groups over these, for sequences
  // of `context` positions) and this rank's layers' windows (empty model_windows: one group,
  // the local layers' bytes in kv_bytes_per_token).
  std::vector<int64_t> model_windows;
  std::vector<int64_t> local_windows;
  // cudaMemGetInfo's free bytes once everything but the KV pool and the sampling workspace is
  // allocated, or 0 (not known): the KV cache takes at most that less the sampling workspace and
  // kDeviceMemoryMarginBytes (other processes, or other backends in this one, hold the rest).
  int64_t device_free_bytes = 0;
};

// What the device keeps free beside the plan: CUDA graphs, cuBLAS' own allocations.
inline constexpr int64_t kDeviceMemoryMarginBytes = int64_t{512} << 20;

struct DeviceMemoryPlan {
  DeviceMemoryInputs in;
  int64_t budget_bytes = 0;  // memory_fraction * device_total_bytes
  int64_t fixed_bytes = 0;   // everything but the KV cache
  int64_t kv_bytes = 0;      // budget - fixed, at most what the device has free
  // The KV budget in whole-model blocks (at most INT32_MAX): with sliding-window layers the
  // largest whose groups (KvGroupsOfBudget) the local layers keep in kv_bytes.
  int64_t kv_blocks = 0;
  int64_t kv_tokens = 0;      // kv_blocks * kv_block_tokens: the engine's budget
  KvGroupBlocks groups;       // the device pool: blocks of each full / sliding-window layer
  int64_t max_sequences = 0;  // sequences of `context` tokens the groups hold (KvSequencesOf)

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
