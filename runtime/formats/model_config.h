// SPDX-License-Identifier: Apache-2.0
// ModelConfig: a Hugging Face config.json (Llama, Qwen2, Qwen3, Mistral decoder-only models and
// Gemma 3's text model, alone or inside Gemma3ForConditionalGeneration's "text_config"),
// validated, with the defaults transformers 5.24 applies (the parameter tensors each
// architecture implies are model_tensors.h's). Every key that changes the forward pass is either honoured or refused
// (Unimplemented, naming the file, key, value and what is supported) here, before any weight is
// read; config_keys.cc lists, per architecture, which keys exist and what each does. Weight
// matrices are (out_features, in_features) as in torch.nn.Linear.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/activation/activation.h"
#include "runtime/core/status.h"

namespace df11 {

// config.json "rope_scaling" (or transformers 5's "rope_parameters"), with transformers' defaults.
struct RopeScaling {
  std::string type;  // "" (none/"default"), "llama3", "linear" or "yarn"
  double factor = 1;
  double low_freq_factor = 1;   // llama3 only
  double high_freq_factor = 4;  // llama3 only
  // llama3 (required), yarn (default: max_position_embeddings)
  int64_t original_max_position_embeddings = 8192;
  double beta_fast = 32;        // yarn
  double beta_slow = 1;         // yarn
  bool truncate = true;         // yarn
  double attention_factor = 0;  // yarn; 0: derived from factor (and mscale / mscale_all_dim)
  double mscale = 0;            // yarn; 0: not given
  double mscale_all_dim = 0;    // yarn; 0: not given
};

// kGemma3: Gemma3ForCausalLM (text-only checkpoints); kGemma3Multimodal:
// Gemma3ForConditionalGeneration, whose language model is served (its vision tower is not).
enum class Architecture { kLlama, kQwen2, kQwen3, kMistral, kGemma3, kGemma3Multimodal };

inline bool IsGemma3(Architecture arch) {
  return arch == Architecture::kGemma3 || arch == Architecture::kGemma3Multimodal;
}

// The transformers class name: "LlamaForCausalLM", "Qwen2ForCausalLM", ...
std::string_view ArchitectureClassName(Architecture arch);
// The config.json "model_type": "llama", "qwen2", "qwen3", "mistral", "gemma3_text", "gemma3".
std::string_view ArchitectureModelType(Architecture arch);
// The architecture of transformers class `class_name`; nullopt when it is not supported.
std::optional<Architecture> ArchitectureOfClass(std::string_view class_name);
// The architecture whose config.json "model_type" is `model_type`; nullopt when not supported.
std::optional<Architecture> ArchitectureOfModelType(std::string_view model_type);
// The supported model types, in order: "llama", "qwen2", "qwen3", "mistral", "gemma3_text",
// "gemma3".
std::vector<std::string> SupportedModelTypes();
// The supported class names, for messages: "LlamaForCausalLM, Qwen2ForCausalLM, ...".
std::string SupportedArchitectureNames();

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string architecture_name;  // config "architectures"[0], e.g. "LlamaForCausalLM"
  std::string model_type;         // config "model_type" (may be empty when the file has none)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // absent or null: num_attention_heads
  int64_t head_dim = 0;             // explicit, else hidden_size / num_attention_heads (Qwen3: 128)
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000;
  RopeScaling rope_scaling;
  // > 0 (Gemma 3): sliding-window layers rotate with this base and local_rope_scaling
  // (rope_local_base_freq, or rope_parameters["sliding_attention"]); the others with the above.
  double local_rope_theta = 0;
  RopeScaling local_rope_scaling;
  // Gemma 3's scalings (1, 0 and head_dim^-0.5 elsewhere):
  float embedding_multiplier = 1;  // embedding rows times this: sqrt(hidden_size) rounded to BF16
  float norm_weight_offset = 0;    // RMSNorm multiplies by (offset + weight): Gemma's (1 + w)
  double attention_scale = 0;      // scores = q·k * this: head_dim^-0.5, query_pre_attn_scalar^-0.5
  double final_logit_softcapping = 0;  // > 0: logits = cap * tanh(logits / cap)
  bool tie_word_embeddings = false;  // true: no lm_head.weight; the LM head is embed_tokens
  // q/k/v projections have biases: always for Qwen2; for Llama/Qwen3 when config attention_bias
  // is true, in which case o_proj has one too (see OutputProjectionHasBias).
  bool attention_bias = false;
  bool qk_norm = false;  // Qwen3, Gemma 3: RMSNorm over head_dim on q and k (self_attn.{q,k}_norm)
  GateActivation hidden_act = GateActivation::kSilu;  // the MLP gate's activation
  // Each layer's attention window (transformers' sliding_window: a query sees the last
  // `window` positions up to its own), 0 for full causal attention. (num_hidden_layers)
  // Mistral: every layer when sliding_window is non-null (absent: 4096); Qwen2/Qwen3: layers
  // >= max_window_layers when use_sliding_window is true (or as layer_types says); Gemma 3: the
  // "sliding_attention" layers of layer_types, or all but every sliding_window_pattern-th.
  std::vector<int64_t> layer_window;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;  // config eos_token_id, an int or a list (may be empty)
  // Keys the architecture's transformers class does not read (nor this runtime), sorted; a
  // warning lists them. They cannot change the math: transformers ignores them too.
  std::vector<std::string> unused_keys;
  // ConfigUse::kConvert only: why kServe would refuse this config (empty when it would not). A
  // refused key may also change the tensors (mlp_bias), so converters check the weight set only
  // when this is empty.
  std::string unsupported;
  nlohmann::json raw;  // the whole file
  // Gemma3ForConditionalGeneration: its "vision_config" (the vision tower is recognised, never
  // loaded); null otherwise.
  nlohmann::json vision_config;
};

// What ParseModelConfig checks.
enum class ConfigUse {
  // Serving: every key that changes the forward pass must hold a value this runtime computes.
  kServe,
  // Lossless conversion (compress, decompress, verify): the tensors the config implies matter,
  // the math does not, so unsupported activations, rope types or windows are accepted.
  kConvert,
};

// Validates `j` (the contents of a config.json; `source_name` is how messages name it).
// Unimplemented for an architecture other than the six above (naming it and the supported ones)
// and, for kServe, for a key whose value this runtime does not compute (hidden_act, rope type,
// sliding window layout, mlp_bias, quantization_config, ...: see config_keys.cc), naming the
// file, key, value and what is supported; InvalidArgument naming the file and field for a
// missing, ill-typed or out-of-range field, for heads not divisible by kv heads, or hidden_size
// not divisible by heads when head_dim is implied.
StatusOr<ModelConfig> ParseModelConfig(const nlohmann::json& j, const std::string& source_name,
                                       ConfigUse use = ConfigUse::kServe);
// Reads and parses `model_dir`/config.json (NotFound when absent, InvalidArgument when not JSON).
StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir,
                                      ConfigUse use = ConfigUse::kServe);

// The attention window of layer `layer` (global index): 0 for full causal attention.
int64_t LayerWindow(const ModelConfig& c, int64_t layer);
// Whether layer `layer` rotates with the local rope parameters (Gemma 3's sliding layers).
bool LayerUsesLocalRope(const ModelConfig& c, int64_t layer);

// True when self_attn.o_proj has a bias (Llama/Qwen3 with attention_bias; never Qwen2).
bool OutputProjectionHasBias(const ModelConfig& c);

}  // namespace df11
