// SPDX-License-Identifier: Apache-2.0
// The config.json keys of each supported architecture, as transformers 5.24's classes (and its
// generic loading, masking and cache code) read them, and what this runtime does with each:
//  - kRead: ParseModelConfig reads it and honours it (dims, rope, activation, windows, ids...);
//  - kNoMath: no effect on the forward pass (metadata, training-only settings, generation
//    defaults: dropout is off at inference, pretraining_tp is not used by transformers 5);
//  - kNeutral: changes the math unless it holds its neutral value, which is all this runtime
//    computes: any other value is refused, naming the reason.
// Keys in no row are unused by the architecture: transformers ignores them, so does this runtime
// (ModelConfig::unused_keys, a warning).
#include <algorithm>
#include <string_view>

#include "runtime/formats/config_parsing.h"

namespace df11::config_parsing {
namespace {

using json = nlohmann::json;

enum ArchBit : unsigned {
  kLlama = 1u << 0,
  kQwen2 = 1u << 1,
  kQwen3 = 1u << 2,
  kMistral = 1u << 3,
  kAll = kLlama | kQwen2 | kQwen3 | kMistral,
};

unsigned BitOf(Architecture arch) {
  switch (arch) {
    case Architecture::kLlama:
      return kLlama;
    case Architecture::kQwen2:
      return kQwen2;
    case Architecture::kQwen3:
      return kQwen3;
    case Architecture::kMistral:
      return kMistral;
  }
  return 0;
}

enum class KeyUse { kRead, kNoMath, kNeutral };

struct ConfigKey {
  std::string_view name;
  unsigned archs;
  KeyUse use;
  std::string_view neutral;  // kNeutral: the JSON value that leaves the math unchanged
  std::string_view reason;   // kNeutral: what another value would ask for
};

constexpr ConfigKey kKeys[] = {
    // Read by ParseModelConfig.
    {"architectures", kAll, KeyUse::kRead, "", ""},
    {"model_type", kAll, KeyUse::kRead, "", ""},
    {"vocab_size", kAll, KeyUse::kRead, "", ""},
    {"hidden_size", kAll, KeyUse::kRead, "", ""},
    {"intermediate_size", kAll, KeyUse::kRead, "", ""},
    {"num_hidden_layers", kAll, KeyUse::kRead, "", ""},
    {"num_attention_heads", kAll, KeyUse::kRead, "", ""},
    {"num_key_value_heads", kAll, KeyUse::kRead, "", ""},
    {"head_dim", kAll, KeyUse::kRead, "", ""},  // Qwen2 reads it with getattr
    {"max_position_embeddings", kAll, KeyUse::kRead, "", ""},
    {"rms_norm_eps", kAll, KeyUse::kRead, "", ""},
    {"hidden_act", kAll, KeyUse::kRead, "", ""},
    {"rope_theta", kAll, KeyUse::kRead, "", ""},
    {"rope_scaling", kAll, KeyUse::kRead, "", ""},
    {"rope_parameters", kAll, KeyUse::kRead, "", ""},
    {"partial_rotary_factor", kAll, KeyUse::kRead, "", ""},
    {"tie_word_embeddings", kAll, KeyUse::kRead, "", ""},
    {"bos_token_id", kAll, KeyUse::kRead, "", ""},
    {"eos_token_id", kAll, KeyUse::kRead, "", ""},
    {"attention_bias", kLlama | kQwen3, KeyUse::kRead, "", ""},
    {"sliding_window", kQwen2 | kQwen3 | kMistral, KeyUse::kRead, "", ""},
    {"use_sliding_window", kQwen2 | kQwen3, KeyUse::kRead, "", ""},
    {"max_window_layers", kQwen2 | kQwen3, KeyUse::kRead, "", ""},
    {"layer_types", kAll, KeyUse::kRead, "", ""},
    // Changes the math unless neutral.
    {"mlp_bias", kLlama, KeyUse::kNeutral, "false", "biases on the MLP projections"},
    {"sliding_window", kLlama, KeyUse::kNeutral, "null",
     "LlamaForCausalLM attends to every position; transformers would window only the KV cache "
     "of generate()"},
    {"quantization_config", kAll, KeyUse::kNeutral, "null", "quantized weights"},
    {"is_causal", kAll, KeyUse::kNeutral, "true", "bidirectional attention"},
    {"attention_chunk_size", kAll, KeyUse::kNeutral, "null", "chunked attention"},
    {"kv_sharing_modes", kAll, KeyUse::kNeutral, "null", "KV cache sharing between layers"},
    // No effect on the forward pass.
    {"pretraining_tp", kLlama, KeyUse::kNoMath, "", ""},
    {"attention_dropout", kAll, KeyUse::kNoMath, "", ""},
    {"initializer_range", kAll, KeyUse::kNoMath, "", ""},
    {"pad_token_id", kAll, KeyUse::kNoMath, "", ""},
    {"use_cache", kAll, KeyUse::kNoMath, "", ""},
    {"torch_dtype", kAll, KeyUse::kNoMath, "", ""},
    {"dtype", kAll, KeyUse::kNoMath, "", ""},
    {"transformers_version", kAll, KeyUse::kNoMath, "", ""},
    {"_name_or_path", kAll, KeyUse::kNoMath, "", ""},
    {"_attn_implementation", kAll, KeyUse::kNoMath, "", ""},
    {"attn_implementation", kAll, KeyUse::kNoMath, "", ""},
    {"output_attentions", kAll, KeyUse::kNoMath, "", ""},
    {"output_hidden_states", kAll, KeyUse::kNoMath, "", ""},
    {"return_dict", kAll, KeyUse::kNoMath, "", ""},
    {"use_bfloat16", kAll, KeyUse::kNoMath, "", ""},
    {"tie_encoder_decoder", kAll, KeyUse::kNoMath, "", ""},
    {"is_encoder_decoder", kAll, KeyUse::kNoMath, "", ""},
    {"is_decoder", kAll, KeyUse::kNoMath, "", ""},
    {"id2label", kAll, KeyUse::kNoMath, "", ""},
    {"label2id", kAll, KeyUse::kNoMath, "", ""},
    {"tokenizer_class", kAll, KeyUse::kNoMath, "", ""},
    {"dfloat11_config", kAll, KeyUse::kNoMath, "", ""},  // how the weights are stored
};

// The row of `key` for `arch`, or null.
const ConfigKey* Find(std::string_view key, unsigned arch) {
  for (const ConfigKey& k : kKeys) {
    if (k.name == key && (k.archs & arch) != 0) return &k;
  }
  return nullptr;
}

// Absence is neutral (the neutral values are transformers' defaults), so is null where the
// default is falsy (is_causal: null would read as false); numbers compare by value (1 == 1.0).
bool IsNeutral(const json& j, const ConfigKey& k) {
  auto it = j.find(std::string(k.name));
  if (it == j.end()) return true;
  if (it->is_null()) return k.neutral == "null" || k.neutral == "false";
  return *it == json::parse(k.neutral);
}

}  // namespace

Status CheckConfigKeys(const json& j, const std::string& source, ModelConfig* c) {
  const unsigned arch = BitOf(c->arch);
  for (const ConfigKey& k : kKeys) {
    if (k.use != KeyUse::kNeutral || (k.archs & arch) == 0 || IsNeutral(j, k)) continue;
    return Status::Unimplemented(
        source + ": field " + Quoted(k.name) + " is " + Describe(j[std::string(k.name)]) +
        ", which asks for " + std::string(k.reason) + "; this runtime does not compute that for " +
        c->architecture_name + " (supported: " +
        (k.neutral == "null" ? std::string("absent or null")
                             : std::string(k.neutral) + " or absent") +
        ")");
  }
  for (const auto& [key, value] : j.items()) {
    if (Find(key, arch) == nullptr) c->unused_keys.push_back(key);
  }
  std::sort(c->unused_keys.begin(), c->unused_keys.end());
  return Status::Ok();
}

}  // namespace df11::config_parsing
