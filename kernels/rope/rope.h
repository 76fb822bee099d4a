// SPDX-License-Identifier: Apache-2.0
// Rotary position embedding as Hugging Face transformers applies it (Llama/Qwen2/Qwen3/Mistral):
// rotate_half convention (element i pairs with i + head_dim/2, not interleaved pairs), angle =
// float32(position) * inv_freq[i] rounded to float32, cos/sin in float32, each multiplied by the
// attention scaling (1 except for yarn). HF then casts cos/sin to the activation dtype; with FP32
// activations that is a no-op.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#if DF11_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace df11 {

// The rope fields of a Hugging Face config (rope_theta and rope_scaling / rope_parameters).
struct RopeParams {
  int64_t head_dim = 0;  // rotary dimension (even); the full head_dim for these models
  double theta = 10000.0;  // rope_theta (base)
  // rope_scaling.rope_type: "" or "default" (no scaling), "llama3", "linear" or "yarn".
  std::string scaling_type;
  double factor = 1.0;            // llama3, linear, yarn: position interpolation factor
  double low_freq_factor = 1.0;   // llama3 only
  double high_freq_factor = 4.0;  // llama3 only
  int64_t original_max_position_embeddings = 8192;  // llama3, yarn
  double beta_fast = 32.0;        // yarn: rotations where the ramp to extrapolation ends
  double beta_slow = 1.0;         // yarn: rotations where interpolation starts
  bool truncate = true;           // yarn: floor/ceil the correction range
  // yarn: the factor cos and sin are multiplied by. <= 0: derived from factor (and mscale /
  // mscale_all_dim when both are > 0), as transformers' _compute_yarn_parameters does.
  double attention_factor = 0.0;
  double mscale = 0.0;            // yarn, 0: not given
  double mscale_all_dim = 0.0;    // yarn, 0: not given
};

// (head_dim / 2) inverse frequencies, transformers' _compute_default_rope_parameters, then
// _compute_llama3_parameters, the linear scaling (inv_freq / factor) or
// _compute_yarn_parameters. Computed in double and rounded to float once (torch computes them in
// float32, so entries can differ from torch's by about an ulp). Requires valid params (the config
// loader checks them and reports bad input).
std::vector<float> RopeInvFreq(const RopeParams& params);

// The factor transformers multiplies cos and sin by ("attention_scaling"): 1 except for yarn.
float RopeAttentionScaling(const RopeParams& params);

// Rotates x in place, with cos and sin multiplied by attention_scaling (RopeAttentionScaling).
// Requires tokens >= 0, heads >= 1, even head_dim >= 2.
void RopeRef(float* x,  // (tokens, heads, head_dim)
             int64_t tokens, int64_t heads, int64_t head_dim,
             const int32_t* positions,  // (tokens)
             const float* inv_freq,     // (head_dim / 2)
             float attention_scaling);

#if DF11_WITH_CUDA
// The same rotation on `stream` (device pointers), in the same operation order without fused
// multiply-adds; cos/sin come from CUDA's sincosf (<= 2 ulp), so results differ from RopeRef by
// a few ulps of |x|. Requires tokens <= INT32_MAX.
void RopeCuda(float* x,  // (tokens, heads, head_dim)
              int64_t tokens, int64_t heads, int64_t head_dim,
              const int32_t* positions,  // (tokens)
              const float* inv_freq,     // (head_dim / 2)
              float attention_scaling, cudaStream_t stream);
#endif

}  // namespace df11
