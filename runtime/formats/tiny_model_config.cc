// SPDX-License-Identifier: Apache-2.0
// The configs make-tiny writes: the keys each architecture's transformers config class saves,
// with small sizes. Gemma 3 configs look like gemma-3-12b/27b-it's: a sliding window on all
// layers but every sliding_window_pattern-th (min(6, layers), so a tiny model has a global layer
// too), linear rope scaling (factor 8) on the global layers, tied or untied embeddings as asked.
#include "runtime/formats/tiny_model_config.h"

#include <algorithm>

namespace df11::tiny_model {
namespace {

using json = nlohmann::json;

json IdOrNull(const std::optional<int64_t>& id) { return id ? json(*id) : json(nullptr); }

constexpr int64_t kGemmaSlidingWindow = 16;  // --sliding-window 0 (the default) for Gemma 3

// The language model's config of Gemma3ForCausalLM, as Gemma3TextConfig saves it.
json GemmaTextConfig(const TinyModelOptions& o, int64_t vocab, const std::optional<int64_t>& bos,
                     const std::optional<int64_t>& eos) {
  const int64_t head_dim = o.head_dim != 0 ? o.head_dim : o.hidden / o.heads;
  const int64_t pattern = std::min<int64_t>(6, o.layers);
  json types = json::array();
  for (int64_t i = 0; i < o.layers; ++i) {
    types.push_back((i + 1) % pattern != 0 ? "sliding_attention" : "full_attention");
  }
  json c = json::object();
  c["architectures"] = {std::string(ArchitectureClassName(Architecture::kGemma3))};
  c["model_type"] = std::string(ArchitectureModelType(Architecture::kGemma3));
  c["vocab_size"] = vocab;
  c["hidden_size"] = o.hidden;
  c["intermediate_size"] = o.intermediate;
  c["num_hidden_layers"] = o.layers;
  c["num_attention_heads"] = o.heads;
  c["num_key_value_heads"] = o.kv_heads;
  c["head_dim"] = head_dim;
  c["hidden_activation"] = "gelu_pytorch_tanh";
  c["max_position_embeddings"] = o.max_position_embeddings;
  c["initializer_range"] = o.init_std;
  c["rms_norm_eps"] = 1e-6;
  c["query_pre_attn_scalar"] = head_dim;
  c["sliding_window"] = o.sliding_window > 0 ? o.sliding_window : kGemmaSlidingWindow;
  c["layer_types"] = types;
  c["rope_parameters"] = {
      {"full_attention", {{"rope_type", "linear"}, {"factor", 8.0}, {"rope_theta", 1000000.0}}},
      {"sliding_attention", {{"rope_type", "default"}, {"rope_theta", 10000.0}}}};
  c["attention_bias"] = false;
  c["attention_dropout"] = 0.0;
  c["attn_logit_softcapping"] = nullptr;
  c["final_logit_softcapping"] = nullptr;
  c["use_bidirectional_attention"] = false;
  c["tie_word_embeddings"] = o.tie_embeddings;
  c["use_cache"] = true;
  c["pad_token_id"] = 0;
  c["bos_token_id"] = IdOrNull(bos);
  c["eos_token_id"] = IdOrNull(eos);
  c["dtype"] = "bfloat16";
  c["transformers_version"] = "5.24.0";
  return c;
}

// Gemma3ForConditionalGeneration: the text model above under "text_config", a small SigLIP
// vision config (UnservedTensors' shapes come from it).
json GemmaMultimodalConfig(const TinyModelOptions& o, int64_t vocab,
                           const std::optional<int64_t>& bos, const std::optional<int64_t>& eos) {
  json text = GemmaTextConfig(o, vocab, bos, eos);
  text.erase("architectures");
  text.erase("transformers_version");
  text.erase("dtype");
  json c = json::object();
  c["architectures"] = {std::string(ArchitectureClassName(Architecture::kGemma3Multimodal))};
  c["model_type"] = std::string(ArchitectureModelType(Architecture::kGemma3Multimodal));
  c["text_config"] = text;
  c["vision_config"] = {{"model_type", "siglip_vision_model"},
                        {"hidden_size", 32},
                        {"intermediate_size", 64},
                        {"num_hidden_layers", 1},
                        {"num_attention_heads", 2},
                        {"num_channels", 3},
                        {"image_size", 28},
                        {"patch_size", 14},
                        {"layer_norm_eps", 1e-6},
                        {"hidden_act", "gelu_pytorch_tanh"},
                        {"vision_use_head", false}};
  c["mm_tokens_per_image"] = 4;
  c["boi_token_index"] = 255999;
  c["eoi_token_index"] = 256000;
  c["image_token_index"] = 262144;
  c["initializer_range"] = o.init_std;
  c["tie_word_embeddings"] = o.tie_embeddings;
  c["dtype"] = "bfloat16";
  c["transformers_version"] = "5.24.0";
  return c;
}

int64_t IntOf(const json& j, const char* key) { return j.at(key).get<int64_t>(); }

}  // namespace

json BuildConfig(const TinyModelOptions& o, Architecture arch, int64_t vocab,
                 const std::optional<int64_t>& bos, const std::optional<int64_t>& eos) {
  if (arch == Architecture::kGemma3) return GemmaTextConfig(o, vocab, bos, eos);
  if (arch == Architecture::kGemma3Multimodal) return GemmaMultimodalConfig(o, vocab, bos, eos);
  const bool llama = arch == Architecture::kLlama;
  json c = json::object();
  c["architectures"] = {std::string(ArchitectureClassName(arch))};
  c["model_type"] = std::string(ArchitectureModelType(arch));
  c["vocab_size"] = vocab;
  c["hidden_size"] = o.hidden;
  c["intermediate_size"] = o.intermediate;
  c["num_hidden_layers"] = o.layers;
  c["num_attention_heads"] = o.heads;
  c["num_key_value_heads"] = o.kv_heads;
  c["head_dim"] = o.head_dim != 0 ? o.head_dim : o.hidden / o.heads;
  c["max_position_embeddings"] = o.max_position_embeddings;
  c["hidden_act"] = "silu";
  c["initializer_range"] = o.init_std;
  c["rms_norm_eps"] = arch == Architecture::kQwen2 || arch == Architecture::kQwen3 ? 1e-6 : 1e-5;
  c["rope_theta"] = llama ? 500000.0 : 1000000.0;
  c["rope_scaling"] = nullptr;
  if (llama && o.llama3_rope_scaling) {
    c["rope_scaling"] = {{"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 8192},
                         {"rope_type", "llama3"}};
  }
  c["attention_dropout"] = 0.0;
  if (llama || arch == Architecture::kQwen3) c["attention_bias"] = false;
  if (llama) {
    c["mlp_bias"] = false;
    c["pretraining_tp"] = 1;
  }
  if (arch == Architecture::kQwen2 || arch == Architecture::kQwen3) {
    c["use_sliding_window"] = false;
    c["max_window_layers"] = o.layers;
  }
  if (arch != Architecture::kLlama) c["sliding_window"] = nullptr;
  c["tie_word_embeddings"] = o.tie_embeddings;
  c["torch_dtype"] = "bfloat16";
  c["use_cache"] = true;
  c["bos_token_id"] = IdOrNull(bos);
  c["eos_token_id"] = IdOrNull(eos);
  c["transformers_version"] = "4.51.3";
  return c;
}

std::vector<ExtraTensor> UnservedTensors(const ModelConfig& config) {
  std::vector<ExtraTensor> out;
  if (config.arch != Architecture::kGemma3Multimodal) return out;
  const json& v = config.vision_config;
  const int64_t h = IntOf(v, "hidden_size"), inter = IntOf(v, "intermediate_size");
  const int64_t patch = IntOf(v, "patch_size"), side = IntOf(v, "image_size") / patch;
  const std::string e = "vision_tower.embeddings.";
  out.push_back({e + "patch_embedding.weight", {h, IntOf(v, "num_channels"), patch, patch}});
  out.push_back({e + "patch_embedding.bias", {h}});
  out.push_back({e + "position_embedding.weight", {side * side, h}});
  auto layer_norm = [&](const std::string& name) {
    out.push_back({name + ".weight", {h}, 1.0f});
    out.push_back({name + ".bias", {h}});
  };
  auto linear = [&](const std::string& name, int64_t rows, int64_t cols) {
    out.push_back({name + ".weight", {rows, cols}});
    out.push_back({name + ".bias", {rows}});
  };
  for (int64_t i = 0; i < IntOf(v, "num_hidden_layers"); ++i) {
    const std::string l = "vision_tower.encoder.layers." + std::to_string(i) + ".";
    layer_norm(l + "layer_norm1");
    for (const char* p : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      linear(l + "self_attn." + p, h, h);
    }
    layer_norm(l + "layer_norm2");
    linear(l + "mlp.fc1", inter, h);
    linear(l + "mlp.fc2", h, inter);
  }
  layer_norm("vision_tower.post_layernorm");
  out.push_back({"multi_modal_projector.mm_input_projection_weight", {h, config.hidden_size}});
  out.push_back({"multi_modal_projector.mm_soft_emb_norm.weight", {h}});  // Gemma: (1 + w)
  return out;
}

}  // namespace df11::tiny_model
