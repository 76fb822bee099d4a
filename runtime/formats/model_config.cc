// SPDX-License-Identifier: Apache-2.0
// ParseModelConfig: the architecture, the dims and token ids (here), the keys that change the
// math (model_config_math.cc) and the key table (config_keys.cc); defaults follow transformers
// 5.24's LlamaConfig/Qwen2Config/Qwen3Config/MistralConfig.
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

constexpr std::array<ArchitectureInfo, 4> kArchitectures = {{
    {Architecture::kLlama, "LlamaForCausalLM", "llama", 2048},
    {Architecture::kQwen2, "Qwen2ForCausalLM", "qwen2", 32768},
    {Architecture::kQwen3, "Qwen3ForCausalLM", "qwen3", 32768},
    {Architecture::kMistral, "MistralForCausalLM", "mistral", 4096 * 32},
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

Status ParseTokenIds(const json& j, const std::string& source, ModelConfig& c) {
  FieldReader r(j, source);
  const std::string id_range = "a token id in [0, vocab_size=" + std::to_string(c.vocab_size) + ")";
  if (r.Has("bos_token_id")) {
    DF11_ASSIGN_OR_RETURN(c.bos_token_id, r.Int("bos_token_id", 0, c.vocab_size - 1, id_range));
  } else if (!j.contains("bos_token_id") &&
             (c.arch == Architecture::kLlama || c.arch == Architecture::kMistral) &&
             c.vocab_size > 2) {
    c.bos_token_id = 1;  // LlamaConfig/MistralConfig default
  }
  if (r.Has("eos_token_id")) {
    const json& eos = r.Get("eos_token_id");
    if (eos.is_array()) {
      for (size_t i = 0; i < eos.size(); ++i) {
        if (!eos[i].is_number_integer() || eos[i].get<int64_t>() < 0 ||
            eos[i].get<int64_t>() >= c.vocab_size) {
          return Status::InvalidArgument(source + ": field \"eos_token_id\"[" + std::to_string(i) +
                                         "] is " + Describe(eos[i]) + "; expected " + id_range);
        }
        c.eos_token_ids.push_back(eos[i].get<int64_t>());
      }
    } else {
      DF11_ASSIGN_OR_RETURN(int64_t id,
                            r.Int("eos_token_id", 0, c.vocab_size - 1, id_range + " or a list"));
      c.eos_token_ids.push_back(id);
    }
  } else if (!j.contains("eos_token_id") &&
             (c.arch == Architecture::kLlama || c.arch == Architecture::kMistral) &&
             c.vocab_size > 2) {
    c.eos_token_ids.push_back(2);  // LlamaConfig/MistralConfig default
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
  FieldReader r(j, source_name);
  DF11_ASSIGN_OR_RETURN(c.vocab_size, r.Dim("vocab_size"));
  DF11_ASSIGN_OR_RETURN(c.hidden_size, r.Dim("hidden_size"));
  DF11_ASSIGN_OR_RETURN(c.intermediate_size, r.Dim("intermediate_size"));
  DF11_ASSIGN_OR_RETURN(
      c.num_hidden_layers,
      r.Int("num_hidden_layers", 1, kMaxLayers,
            "a positive integer (at most " + std::to_string(kMaxLayers) + ")"));
  DF11_ASSIGN_OR_RETURN(c.num_attention_heads, r.Dim("num_attention_heads"));
  DF11_ASSIGN_OR_RETURN(c.num_key_value_heads,
                        r.DimOr("num_key_value_heads", c.num_attention_heads));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return Status::InvalidArgument(
        source_name + ": num_attention_heads (" + std::to_string(c.num_attention_heads) +
        ") must be a multiple of num_key_value_heads (" + std::to_string(c.num_key_value_heads) +
        ")");
  }
  if (r.Has("head_dim")) {
    DF11_ASSIGN_OR_RETURN(c.head_dim, r.Dim("head_dim"));
  } else if (c.arch == Architecture::kQwen3 && !j.contains("head_dim")) {
    c.head_dim = 128;  // Qwen3Config default
  } else {
    if (c.hidden_size % c.num_attention_heads != 0) {
      return Status::InvalidArgument(
          source_name + ": hidden_size (" + std::to_string(c.hidden_size) +
          ") must be a multiple of num_attention_heads (" + std::to_string(c.num_attention_heads) +
          ") when \"head_dim\" is not given");
    }
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.num_attention_heads * c.head_dim > kMaxDim) {
    return Status::InvalidArgument(source_name + ": num_attention_heads * head_dim is larger than " +
                                   std::to_string(kMaxDim));
  }
  DF11_ASSIGN_OR_RETURN(c.max_position_embeddings,
                        r.DimOr("max_position_embeddings",
                                InfoOf(c.arch).default_max_position_embeddings));
  DF11_ASSIGN_OR_RETURN(c.rms_norm_eps, r.PositiveNumberOr("rms_norm_eps", 1e-6));
  DF11_ASSIGN_OR_RETURN(c.tie_word_embeddings, r.BoolOr("tie_word_embeddings", false));
  if (c.arch == Architecture::kQwen2) {
    c.attention_bias = true;  // Qwen2Attention hard-codes q/k/v biases
  } else if (c.arch != Architecture::kMistral) {
    DF11_ASSIGN_OR_RETURN(c.attention_bias, r.BoolOr("attention_bias", false));
  }
  c.qk_norm = c.arch == Architecture::kQwen3;
  DF11_RETURN_IF_ERROR(ParseTokenIds(j, source_name, c));
  // The keys that change the math. Converting ignores what it does not compute (Unimplemented),
  // never ill-formed fields.
  auto math = [use, &c](const Status& s) {
    if (use != ConfigUse::kConvert || s.code() != StatusCode::kUnimplemented) return s;
    if (c.unsupported.empty()) c.unsupported = s.message();
    return Status::Ok();
  };
  DF11_RETURN_IF_ERROR(math(config_parsing::ParseHiddenAct(j, source_name, &c)));
  DF11_RETURN_IF_ERROR(math(config_parsing::ParseRope(j, source_name, &c)));
  DF11_RETURN_IF_ERROR(math(config_parsing::ParseAttentionWindows(j, source_name, &c)));
  DF11_RETURN_IF_ERROR(math(config_parsing::CheckConfigKeys(j, source_name, &c)));
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

bool OutputProjectionHasBias(const ModelConfig& c) {
  return c.attention_bias && c.arch != Architecture::kQwen2;
}

}  // namespace df11
