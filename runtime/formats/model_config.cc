// SPDX-License-Identifier: Apache-2.0
// ParseModelConfig: the architecture, the dims and token ids (here), the keys that change the
// math (model_config_math.cc) and the key table (config_keys.cc); defaults follow transformers
// 5.24's LlamaConfig/Qwen2Config/Qwen3Config/MistralConfig/Gemma3TextConfig/Gemma3Config.
#include "runtime/formats/model_config.h"

#include <glog/logging.h>

#include <array>

#include "runtime/core/file_util.h"
#include "runtime/formats/config_parsing.h"

namespace df11 {
namespace {

using json = nlohmann::json;
using config_parsing::Describe;
using config_parsing::FieldReader;
using config_parsing::kMaxDim;
using config_parsing::kMaxLayers;
using config_parsing::Quoted;

struct ArchitectureInfo {
  Architecture arch;
  std::string_view class_name;
  std::string_view model_type;
  int64_t default_max_position_embeddings;  // transformers' default when the field is absent
};

constexpr std::array<ArchitectureInfo, 6> kArchitectures = {{
    {Architecture::kLlama, "LlamaForCausalLM", "llama", 2048},
    {Architecture::kQwen2, "Qwen2ForCausalLM", "qwen2", 32768},
    {Architecture::kQwen3, "Qwen3ForCausalLM", "qwen3", 32768},
    {Architecture::kMistral, "MistralForCausalLM", "mistral", 4096 * 32},
    {Architecture::kGemma3, "Gemma3ForCausalLM", "gemma3_text", 131072},
    {Architecture::kGemma3Multimodal, "Gemma3ForConditionalGeneration", "gemma3", 131072},
}};

const ArchitectureInfo& InfoOf(Architecture arch) {
  for (const ArchitectureInfo& info : kArchitectures) {
    if (info.arch == arch) return info;
  }
  return kArchitectures[0];
}

StatusOr<Architecture> ResolveArchitecture(const json& j, const std::string& source,
                                           ModelConfig& c) {
  FieldReader r(j, source);
  if (r.Has("model_type")) {
    if (!r.Get("model_type").is_string()) return r.Error("model_type", "a string");
    c.model_type = r.Get("model_type").get<std::string>();
  }
  if (r.Has("architectures")) {
    const json& archs = r.Get("architectures");
    if (!archs.is_array() || archs.empty() || !archs[0].is_string()) {
      return r.Error("architectures", "a non-empty list of class names such as [\"" +
                                          std::string(kArchitectures[0].class_name) + "\"]");
    }
    c.architecture_name = archs[0].get<std::string>();
    if (std::optional<Architecture> arch = ArchitectureOfClass(c.architecture_name)) return *arch;
    return Status::Unimplemented(source + ": architecture " + Quoted(c.architecture_name) +
                                 " is not supported; supported: " + SupportedArchitectureNames());
  }
  // No "architectures": transformers' AutoModelForCausalLM goes by model_type.
  if (c.model_type.empty()) {
    return r.Error("architectures", "a list of class names such as [\"" +
                                        std::string(kArchitectures[0].class_name) +
                                        "\"] (or a \"model_type\")");
  }
  for (const ArchitectureInfo& info : kArchitectures) {
    if (info.model_type == c.model_type) {
      c.architecture_name = std::string(info.class_name);
      return info.arch;
    }
  }
  return Status::Unimplemented(source + ": model_type " + Quoted(c.model_type) +
                               " is not supported; supported: " + SupportedArchitectureNames());
}

// The token ids of `r` (the file, or a multimodal config's text_config); absent ones take the
// config classes' defaults (Llama/Mistral BOS 1, EOS 2; Gemma 3 BOS 2, EOS 1) when `defaults`,
// else stay as they are.
Status ParseTokenIds(const FieldReader& r, bool defaults, ModelConfig& c) {
  const json& j = r.obj();
  const std::string id_range = "a token id in [0, vocab_size=" + std::to_string(c.vocab_size) + ")";
  const bool llama_ids = c.arch == Architecture::kLlama || c.arch == Architecture::kMistral;
  std::optional<int64_t> default_bos, default_eos;
  if (llama_ids && c.vocab_size > 2) default_bos = 1, default_eos = 2;
  if (IsGemma3(c.arch) && c.vocab_size > 2) default_bos = 2, default_eos = 1;
  if (r.Has("bos_token_id")) {
    DF11_ASSIGN_OR_RETURN(c.bos_token_id, r.Int("bos_token_id", 0, c.vocab_size - 1, id_range));
  } else if (defaults && !j.contains("bos_token_id")) {
    c.bos_token_id = default_bos;
  }
  if (r.Has("eos_token_id") || defaults) c.eos_token_ids.clear();
  if (r.Has("eos_token_id")) {
    const json& eos = r.Get("eos_token_id");
    if (eos.is_array()) {
      for (size_t i = 0; i < eos.size(); ++i) {
        if (!eos[i].is_number_integer() || eos[i].get<int64_t>() < 0 ||
            eos[i].get<int64_t>() >= c.vocab_size) {
          return Status::InvalidArgument(r.source() + ": field " + r.Field("eos_token_id") + "[" +
                                         std::to_string(i) + "] is " + Describe(eos[i]) +
                                         "; expected " + id_range);
        }
        c.eos_token_ids.push_back(eos[i].get<int64_t>());
      }
    } else {
      DF11_ASSIGN_OR_RETURN(int64_t id,
                            r.Int("eos_token_id", 0, c.vocab_size - 1, id_range + " or a list"));
      c.eos_token_ids.push_back(id);
    }
  } else if (defaults && !j.contains("eos_token_id") && default_eos) {
    c.eos_token_ids.push_back(*default_eos);
  }
  return Status::Ok();
}

// Gemma3ForConditionalGeneration's own keys: its text_config (an object) holds the language model;
// its vision_config is kept as it is (the vision tower is not served); tie_word_embeddings (true
// when absent) is the top level's, as transformers ties the LM head by it.
Status ParseMultimodalTop(const FieldReader& top, ModelConfig& c) {
  if (!top.Has("text_config") || !top.Get("text_config").is_object()) {
    return top.Error("text_config", "an object holding the language model's config (" +
                                        std::string(ArchitectureModelType(Architecture::kGemma3)) +
                                        ")");
  }
  if (top.Has("vision_config")) {
    if (!top.Get("vision_config").is_object()) return top.Error("vision_config", "an object");
    c.vision_config = top.Get("vision_config");
  }
  return Status::Ok();
}

}  // namespace

std::string_view ArchitectureClassName(Architecture arch) { return InfoOf(arch).class_name; }
std::string_view ArchitectureModelType(Architecture arch) { return InfoOf(arch).model_type; }

std::optional<Architecture> ArchitectureOfModelType(std::string_view model_type) {
  for (const ArchitectureInfo& info : kArchitectures) {
    if (info.model_type == model_type) return info.arch;
  }
  return std::nullopt;
}

std::vector<std::string> SupportedModelTypes() {
  std::vector<std::string> types;
  for (const ArchitectureInfo& info : kArchitectures) types.emplace_back(info.model_type);
  return types;
}

std::optional<Architecture> ArchitectureOfClass(std::string_view class_name) {
  for (const ArchitectureInfo& info : kArchitectures) {
    if (info.class_name == class_name) return info.arch;
  }
  return std::nullopt;
}

std::string SupportedArchitectureNames() {
  std::string s;
  for (const ArchitectureInfo& info : kArchitectures) {
    if (!s.empty()) s += ", ";
    s += info.class_name;
  }
  return s;
}

StatusOr<ModelConfig> ParseModelConfig(const json& j, const std::string& source_name,
                                       ConfigUse use) {
  if (!j.is_object()) {
    return Status::InvalidArgument(source_name + ": expected a JSON object, got " + Describe(j));
  }
  ModelConfig c;
  DF11_ASSIGN_OR_RETURN(c.arch, ResolveArchitecture(j, source_name, c));
  const FieldReader top(j, source_name);
  const bool multimodal = c.arch == Architecture::kGemma3Multimodal;
  if (multimodal) DF11_RETURN_IF_ERROR(ParseMultimodalTop(top, c));
  // The language model's fields: the file's, or the multimodal config's "text_config".
  const FieldReader r = multimodal ? top.Nested("text_config") : top;
  const bool gemma = IsGemma3(c.arch);
  // Required, except that Gemma3TextConfig has defaults (published text_configs omit some).
  auto dim = [&](const std::string& key, int64_t gemma_default) {
    return gemma ? r.DimOr(key, gemma_default) : r.Dim(key);
  };
  DF11_ASSIGN_OR_RETURN(c.vocab_size, dim("vocab_size", 262208));
  DF11_ASSIGN_OR_RETURN(c.hidden_size, dim("hidden_size", 2304));
  DF11_ASSIGN_OR_RETURN(c.intermediate_size, dim("intermediate_size", 9216));
  if (gemma && !r.Has("num_hidden_layers")) {
    c.num_hidden_layers = 26;
  } else {
    DF11_ASSIGN_OR_RETURN(
        c.num_hidden_layers,
        r.Int("num_hidden_layers", 1, kMaxLayers,
              "a positive integer (at most " + std::to_string(kMaxLayers) + ")"));
  }
  DF11_ASSIGN_OR_RETURN(c.num_attention_heads, dim("num_attention_heads", 8));
  DF11_ASSIGN_OR_RETURN(c.num_key_value_heads,
                        r.DimOr("num_key_value_heads", gemma ? 4 : c.num_attention_heads));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return Status::InvalidArgument(
        source_name + ": " + r.prefix() + "num_attention_heads (" +
        std::to_string(c.num_attention_heads) + ") must be a multiple of " + r.prefix() +
        "num_key_value_heads (" + std::to_string(c.num_key_value_heads) + ")");
  }
  // Gemma3TextConfig checks this even with head_dim given.
  const bool heads_divide_hidden = c.hidden_size % c.num_attention_heads == 0;
  if (r.Has("head_dim")) {
    DF11_ASSIGN_OR_RETURN(c.head_dim, r.Dim("head_dim"));
  } else if (c.arch == Architecture::kQwen3 && !r.obj().contains("head_dim")) {
    c.head_dim = 128;  // Qwen3Config default
  } else if (gemma && !r.obj().contains("head_dim")) {
    c.head_dim = 256;  // Gemma3TextConfig default
  } else {
    if (!heads_divide_hidden) {
      return Status::InvalidArgument(
          source_name + ": " + r.prefix() + "hidden_size (" + std::to_string(c.hidden_size) +
          ") must be a multiple of num_attention_heads (" + std::to_string(c.num_attention_heads) +
          ") when \"head_dim\" is not given");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (gemma && !heads_divide_hidden) {
    return Status::InvalidArgument(source_name + ": " + r.prefix() + "hidden_size (" +
                                   std::to_string(c.hidden_size) +
                                   ") must be a multiple of num_attention_heads (" +
                                   std::to_string(c.num_attention_heads) +
                                   "), as Gemma3TextConfig requires");
  }
  if (c.num_attention_heads * c.head_dim > kMaxDim) {
    return Status::InvalidArgument(source_name + ": num_attention_heads * head_dim is larger than " +
                                   std::to_string(kMaxDim));
  }
  DF11_ASSIGN_OR_RETURN(c.max_position_embeddings,
                        r.DimOr("max_position_embeddings",
                                InfoOf(c.arch).default_max_position_embeddings));
  DF11_ASSIGN_OR_RETURN(c.rms_norm_eps, r.PositiveNumberOr("rms_norm_eps", 1e-6));
  DF11_ASSIGN_OR_RETURN(c.tie_word_embeddings,
                        (multimodal ? top : r).BoolOr("tie_word_embeddings", gemma));
  if (c.arch == Architecture::kQwen2) {
    c.attention_bias = true;  // Qwen2Attention hard-codes q/k/v biases
  } else if (c.arch != Architecture::kMistral) {
    DF11_ASSIGN_OR_RETURN(c.attention_bias, r.BoolOr("attention_bias", false));
  }
  c.qk_norm = c.arch == Architecture::kQwen3 || gemma;
  DF11_RETURN_IF_ERROR(ParseTokenIds(r, /*defaults=*/true, c));
  // A multimodal config's own token ids (the published ones carry eos_token_id) win.
  if (multimodal) DF11_RETURN_IF_ERROR(ParseTokenIds(top, /*defaults=*/false, c));
  // The keys that change the math. Converting ignores what it does not compute (Unimplemented),
  // never ill-formed fields.
  auto math = [use, &c](const Status& s) {
    if (use != ConfigUse::kConvert || s.code() != StatusCode::kUnimplemented) return s;
    if (c.unsupported.empty()) c.unsupported = s.message();
    return Status::Ok();
  };
  DF11_RETURN_IF_ERROR(math(config_parsing::ParseHiddenAct(r, &c)));
  DF11_RETURN_IF_ERROR(math(config_parsing::ParseRope(r, &c)));
  DF11_RETURN_IF_ERROR(math(config_parsing::ParseAttentionWindows(r, &c)));
  DF11_RETURN_IF_ERROR(math(config_parsing::ParseScalings(r, &c)));
  if (multimodal) {
    DF11_RETURN_IF_ERROR(math(config_parsing::CheckConfigKeys(top, c.arch, &c)));
  }
  DF11_RETURN_IF_ERROR(math(config_parsing::CheckConfigKeys(
      r, multimodal ? Architecture::kGemma3 : c.arch, &c)));
  if (c.layer_window.size() != static_cast<size_t>(c.num_hidden_layers)) {
    c.layer_window.assign(static_cast<size_t>(c.num_hidden_layers), 0);  // kConvert, refused
  }
  if (use == ConfigUse::kServe && !c.unused_keys.empty()) {
    std::string keys;
    for (const std::string& k : c.unused_keys) keys += (keys.empty() ? "" : ", ") + k;
    LOG(WARNING) << source_name << ": keys that " << c.architecture_name
                 << " does not use (ignored, as transformers ignores them): " << keys;
  }
  c.raw = j;
  return c;
}

StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir, ConfigUse use) {
  const std::string path = JoinPath(model_dir, "config.json");
  DF11_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidArgument(path + ": not valid JSON");
  return ParseModelConfig(j, path, use);
}

int64_t LayerWindow(const ModelConfig& c, int64_t layer) {
  if (layer < 0 || layer >= static_cast<int64_t>(c.layer_window.size())) return 0;
  return c.layer_window[static_cast<size_t>(layer)];
}

bool LayerUsesLocalRope(const ModelConfig& c, int64_t layer) {
  return c.local_rope_theta > 0 && LayerWindow(c, layer) > 0;
}

bool OutputProjectionHasBias(const ModelConfig& c) {
  return c.attention_bias && c.arch != Architecture::kQwen2;
}

}  // namespace df11
