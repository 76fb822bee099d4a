// SPDX-License-Identifier: Apache-2.0
// The config.json keys of each supported architecture, as transformers 5.24's classes (and its
// generic loading, masking and cache code) read them, and what this runtime does with each:
//  - kRead: ParseModelConfig reads it and honours it (dims, rope, activation, windows, ids...);
//  - kNoMath: no effect on the forward pass (metadata, training-only settings, generation
//    defaults: dropout is off at inference, pretraining_tp is not used by transformers 5);
//  - kNeutral: changes the math unless it holds its neutral value, which is all this runtime
//    computes: any other value is refused, naming the reason.
// Keys in no row are unused by the architecture: transformers ignores them, so does this runtime
// (ModelConfig::unused_keys, a warning). Gemma3ForConditionalGeneration has two tables: its own
// top-level keys (kGemma3Outer) and its "text_config", read as a Gemma3ForCausalLM config's.
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
  kGemma3 = 1u << 4,       // Gemma3ForCausalLM, and the text_config of the multimodal class
  kGemma3Outer = 1u << 5,  // Gemma3ForConditionalGeneration's own keys
  kText = kLlama | kQwen2 | kQwen3 | kMistral | kGemma3,  // language model configs
  kAll = kText | kGemma3Outer,
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
    case Architecture::kGemma3:
      return kGemma3;
    case Architecture::kGemma3Multimodal:
      return kGemma3Outer;
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
    {"vocab_size", kText, KeyUse::kRead, "", ""},
    {"hidden_size", kText, KeyUse::kRead, "", ""},
    {"intermediate_size", kText, KeyUse::kRead, "", ""},
    {"num_hidden_layers", kText, KeyUse::kRead, "", ""},
    {"num_attention_heads", kText, KeyUse::kRead, "", ""},
    {"num_key_value_heads", kText, KeyUse::kRead, "", ""},
    {"head_dim", kText, KeyUse::kRead, "", ""},  // Qwen2 reads it with getattr
    {"max_position_embeddings", kText, KeyUse::kRead, "", ""},
    {"rms_norm_eps", kText, KeyUse::kRead, "", ""},
    {"hidden_act", kText & ~kGemma3, KeyUse::kRead, "", ""},
    {"hidden_activation", kGemma3, KeyUse::kRead, "", ""},
    {"rope_theta", kText, KeyUse::kRead, "", ""},
    {"rope_scaling", kText, KeyUse::kRead, "", ""},
    {"rope_parameters", kText, KeyUse::kRead, "", ""},
    {"rope_local_base_freq", kGemma3, KeyUse::kRead, "", ""},
    {"partial_rotary_factor", kText, KeyUse::kRead, "", ""},
    {"tie_word_embeddings", kAll, KeyUse::kRead, "", ""},
    {"bos_token_id", kAll, KeyUse::kRead, "", ""},
    {"eos_token_id", kAll, KeyUse::kRead, "", ""},
    {"attention_bias", kLlama | kQwen3 | kGemma3, KeyUse::kRead, "", ""},
    {"sliding_window", kQwen2 | kQwen3 | kMistral | kGemma3, KeyUse::kRead, "", ""},
    {"use_sliding_window", kQwen2 | kQwen3, KeyUse::kRead, "", ""},
    {"max_window_layers", kQwen2 | kQwen3, KeyUse::kRead, "", ""},
    {"sliding_window_pattern", kGemma3, KeyUse::kRead, "", ""},
    {"layer_types", kText, KeyUse::kRead, "", ""},
    {"query_pre_attn_scalar", kGemma3, KeyUse::kRead, "", ""},
    {"final_logit_softcapping", kGemma3, KeyUse::kRead, "", ""},
    {"text_config", kGemma3Outer, KeyUse::kRead, "", ""},
    // Changes the math unless neutral.
    {"mlp_bias", kLlama, KeyUse::kNeutral, "false", "biases on the MLP projections"},
    {"sliding_window", kLlama, KeyUse::kNeutral, "null",
     "LlamaForCausalLM attends to every position; transformers would window only the KV cache "
     "of generate()"},
    {"quantization_config", kAll, KeyUse::kNeutral, "null", "quantized weights"},
    {"is_causal", kAll, KeyUse::kNeutral, "true", "bidirectional attention"},
    {"attention_chunk_size", kAll, KeyUse::kNeutral, "null", "chunked attention"},
    {"kv_sharing_modes", kAll, KeyUse::kNeutral, "null", "KV cache sharing between layers"},
    {"use_bidirectional_attention", kGemma3, KeyUse::kNeutral, "false",
     "bidirectional attention over text tokens"},
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
    {"cache_implementation", kGemma3, KeyUse::kNoMath, "", ""},   // generate()'s cache class
    {"_sliding_window_pattern", kGemma3, KeyUse::kNoMath, "", ""},  // layer_types says it
    // transformers 5.24's Gemma3Attention never passes it to the attention.
    {"attn_logit_softcapping", kGemma3, KeyUse::kNoMath, "", ""},
    // The vision tower and the image tokens: recognised, not served (a request with an image is
    // refused).
    {"vision_config", kGemma3Outer, KeyUse::kNoMath, "", ""},
    {"mm_tokens_per_image", kGemma3Outer, KeyUse::kNoMath, "", ""},
    {"boi_token_index", kGemma3Outer, KeyUse::kNoMath, "", ""},
    {"eoi_token_index", kGemma3Outer, KeyUse::kNoMath, "", ""},
    {"image_token_index", kGemma3Outer, KeyUse::kNoMath, "", ""},
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

Status CheckConfigKeys(const FieldReader& r, Architecture table, ModelConfig* c) {
  const json& j = r.obj();
  const unsigned arch = BitOf(table);
  for (const ConfigKey& k : kKeys) {
    if (k.use != KeyUse::kNeutral || (k.archs & arch) == 0 || IsNeutral(j, k)) continue;
    return Status::Unimplemented(
        r.source() + ": field " + r.Field(std::string(k.name)) + " is " +
        Describe(j[std::string(k.name)]) + ", which asks for " + std::string(k.reason) +
        "; this runtime does not compute that for " + c->architecture_name + " (supported: " +
        (k.neutral == "null" ? std::string("absent or null")
                             : std::string(k.neutral) + " or absent") +
        ")");
  }
  for (const auto& [key, value] : j.items()) {
    if (Find(key, arch) == nullptr) c->unused_keys.push_back(r.prefix() + key);
  }
  std::sort(c->unused_keys.begin(), c->unused_keys.end());
  return Status::Ok();
}

}  // namespace df11::config_parsing
