// SPDX-License-Identifier: Apache-2.0
// The config.json keys that change the forward pass, read as transformers 5.24 reads them:
// hidden_act (ACT2FN; Gemma 3: hidden_activation), the rotary embedding (rope_theta and
// rope_scaling / rope_parameters: default, linear, llama3, yarn; Gemma 3: one set per layer type,
// the sliding layers' from rope_local_base_freq), sliding-window attention (Mistral:
// sliding_window, 4096 when absent; Qwen2/Qwen3: use_sliding_window, sliding_window,
// max_window_layers, layer_types; Gemma 3: layer_types or sliding_window_pattern) and Gemma 3's
// scalings (embedding, (1 + w) norms, query_pre_attn_scalar, final logit softcapping).
// What this runtime does not compute is refused by name (Unimplemented), never approximated.
#include <cmath>
#include <map>
#include <set>

#include "kernels/common/bf16.h"
#include "runtime/formats/config_parsing.h"

namespace df11::config_parsing {
namespace {

using json = nlohmann::json;

// transformers' rope types this runtime computes, and the keys each reads besides rope_type /
// type, rope_theta and partial_rotary_factor.
const std::map<std::string, std::set<std::string>>& RopeTypes() {
  static const auto* types = new std::map<std::string, std::set<std::string>>{
      {"default", {}},
      {"linear", {"factor"}},
      {"llama3",
       {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}},
      {"yarn",
       {"factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "attention_factor",
        "mscale", "mscale_all_dim", "truncate"}},
  };
  return *types;
}

constexpr char kRopeTypesList[] = "default, linear, llama3, yarn";

// yarn's optional numbers: transformers reads them with `or` (absent, null or 0 is the default).
StatusOr<double> NumberOrDefault(const FieldReader& r, const std::string& key, double fallback) {
  if (!r.Has(key)) return fallback;
  if (!r.Get(key).is_number() || r.Get(key).get<double>() < 0) {
    return r.Error(key, "a non-negative number");
  }
  const double v = r.Get(key).get<double>();
  return v == 0 ? fallback : v;
}

Status ParseYarn(const FieldReader& r, RopeScaling* s) {
  DF11_ASSIGN_OR_RETURN(s->beta_fast, NumberOrDefault(r, "beta_fast", 32));
  DF11_ASSIGN_OR_RETURN(s->beta_slow, NumberOrDefault(r, "beta_slow", 1));
  DF11_ASSIGN_OR_RETURN(s->mscale, NumberOrDefault(r, "mscale", 0));
  DF11_ASSIGN_OR_RETURN(s->mscale_all_dim, NumberOrDefault(r, "mscale_all_dim", 0));
  DF11_ASSIGN_OR_RETURN(s->truncate, r.BoolOr("truncate", true));
  DF11_ASSIGN_OR_RETURN(s->attention_factor, r.PositiveNumberOr("attention_factor", 0));
  // A correction range wider than the frequencies or an inverted one is still well defined (the
  // ramp clamps), as in transformers.
  return Status::Ok();
}

Status CheckPartialRotary(const FieldReader& r) {
  if (!r.Has("partial_rotary_factor")) return Status::Ok();
  const json& v = r.Get("partial_rotary_factor");
  if (!v.is_number()) return r.Error("partial_rotary_factor", "a number");
  if (v.get<double>() != 1.0) {
    return r.Unsupported("partial_rotary_factor", "1 (rotary embedding over all of head_dim)");
  }
  return Status::Ok();
}

// One rope dict `r` (rope_scaling, rope_parameters, or one of Gemma 3's per-layer-type entries)
// into *theta (its rope_theta, else the value *theta holds) and *s; the keys its type does not
// read go to c->unused_keys (transformers warns and ignores them).
Status ParseRopeDict(const FieldReader& r, double* theta, RopeScaling* s, ModelConfig* c) {
  const json& rs = r.obj();
  DF11_ASSIGN_OR_RETURN(*theta, r.PositiveNumberOr("rope_theta", *theta));
  DF11_RETURN_IF_ERROR(CheckPartialRotary(r));
  const std::string type_key = r.Has("rope_type") ? "rope_type" : "type";
  std::string type = "default";
  if (r.Has(type_key)) {
    if (!rs[type_key].is_string()) return r.Error(type_key, "a string such as \"llama3\"");
    type = rs[type_key].get<std::string>();
  }
  auto known = RopeTypes().find(type);
  if (known == RopeTypes().end()) return r.Unsupported(type_key, kRopeTypesList);
  for (const auto& [k, v] : rs.items()) {
    if (k != "rope_type" && k != "type" && k != "rope_theta" && k != "partial_rotary_factor" &&
        !known->second.count(k)) {
      c->unused_keys.push_back(r.prefix() + k);
    }
  }
  *s = RopeScaling{};
  if (type == "default") return Status::Ok();
  s->type = type;
  if (!r.Has("factor")) return r.Error("factor", "a positive number");
  DF11_ASSIGN_OR_RETURN(s->factor, r.PositiveNumberOr("factor", 1));
  if (type == "llama3") {
    for (const char* required :
         {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
      if (!r.Has(required)) return r.Error(required, "a positive number");
    }
    DF11_ASSIGN_OR_RETURN(s->low_freq_factor, r.PositiveNumberOr("low_freq_factor", 1));
    DF11_ASSIGN_OR_RETURN(s->high_freq_factor, r.PositiveNumberOr("high_freq_factor", 4));
    if (!(s->high_freq_factor > s->low_freq_factor)) {
      return r.Error("high_freq_factor", "a number greater than low_freq_factor (" +
                                             std::to_string(s->low_freq_factor) + ")");
    }
  }
  // yarn defaults to the model's own context length, as transformers' standardize_rope_params.
  DF11_ASSIGN_OR_RETURN(s->original_max_position_embeddings,
                        r.DimOr("original_max_position_embeddings", c->max_position_embeddings));
  if (type == "yarn") DF11_RETURN_IF_ERROR(ParseYarn(r, s));
  return Status::Ok();
}

// rope_scaling, when set and not {}, wins over rope_parameters (transformers 5).
bool HasRopeScaling(const FieldReader& r) {
  return r.Has("rope_scaling") && !(r.Get("rope_scaling").is_object() &&
                                    r.Get("rope_scaling").empty());
}

// Gemma3TextConfig.convert_rope_params_to_dict: rope_parameters holds one entry per layer type
// ("full_attention", "sliding_attention"); rope_scaling (older configs) updates the full
// attention entry; an entry's rope_theta defaults to rope_theta (1e6) for the full layers and to
// rope_local_base_freq (1e4) for the sliding ones.
Status ParseGemmaRope(const FieldReader& top, ModelConfig* c) {
  DF11_RETURN_IF_ERROR(CheckPartialRotary(top));
  DF11_ASSIGN_OR_RETURN(c->rope_theta, top.PositiveNumberOr("rope_theta", 1e6));
  DF11_ASSIGN_OR_RETURN(c->local_rope_theta, top.PositiveNumberOr("rope_local_base_freq", 1e4));
  json full = json::object(), sliding = json::object();
  std::string full_name = "rope_parameters.full_attention";
  if (top.Has("rope_parameters")) {
    const json& rp = top.Get("rope_parameters");
    if (!rp.is_object()) {
      return top.Error("rope_parameters",
                       "an object with \"full_attention\" and \"sliding_attention\" entries");
    }
    const FieldReader r = top.Nested("rope_parameters");
    for (const auto& [k, v] : rp.items()) {
      if (k != "full_attention" && k != "sliding_attention") {
        return r.Unsupported(k, "one entry per layer type: \"full_attention\", "
                                "\"sliding_attention\"");
      }
      if (!v.is_null() && !v.is_object()) return r.Error(k, "null or an object");
      if (v.is_object()) (k == "full_attention" ? full : sliding) = v;
    }
  }
  if (HasRopeScaling(top)) {
    if (!top.Get("rope_scaling").is_object()) {
      return top.Error("rope_scaling", "null or an object with a \"rope_type\"");
    }
    full.update(top.Get("rope_scaling"));
    full_name = "rope_scaling";
  }
  DF11_RETURN_IF_ERROR(ParseRopeDict(FieldReader(full, top.source(), top.prefix() + full_name + "."),
                                     &c->rope_theta, &c->rope_scaling, c));
  return ParseRopeDict(FieldReader(sliding, top.source(),
                                   top.prefix() + "rope_parameters.sliding_attention."),
                       &c->local_rope_theta, &c->local_rope_scaling, c);
}

}  // namespace

Status ParseHiddenAct(const FieldReader& r, ModelConfig* c) {
  const bool gemma = IsGemma3(c->arch);
  // Gemma3MLP reads hidden_activation; the other families hidden_act.
  const std::string key = gemma ? "hidden_activation" : "hidden_act";
  DF11_ASSIGN_OR_RETURN(std::string act, r.StringOr(key, gemma ? "gelu_pytorch_tanh" : "silu"));
  if (act == "silu" || act == "swish") {
    c->hidden_act = GateActivation::kSilu;
  } else if (act == "gelu_pytorch_tanh") {
    c->hidden_act = GateActivation::kGeluTanh;
  } else if (act == "gelu") {
    c->hidden_act = GateActivation::kGelu;
  } else {
    return r.Unsupported(key, "\"silu\" (or \"swish\"), \"gelu_pytorch_tanh\", \"gelu\"");
  }
  return Status::Ok();
}

Status ParseRope(const FieldReader& top, ModelConfig* c) {
  if (IsGemma3(c->arch)) return ParseGemmaRope(top, c);
  DF11_ASSIGN_OR_RETURN(c->rope_theta, top.PositiveNumberOr("rope_theta", 10000));
  DF11_RETURN_IF_ERROR(CheckPartialRotary(top));
  // transformers 5: rope_scaling (when set) wins over rope_parameters; the dict's rope_theta
  // over the top-level one.
  std::string key;
  if (HasRopeScaling(top)) {
    key = "rope_scaling";
  } else if (top.Has("rope_parameters")) {
    key = "rope_parameters";
  }
  c->rope_scaling = RopeScaling{};
  if (key.empty()) return Status::Ok();
  if (!top.Get(key).is_object()) return top.Error(key, "null or an object with a \"rope_type\"");
  const FieldReader r = top.Nested(key);
  for (const char* layer_type : {"full_attention", "sliding_attention"}) {
    if (r.obj().contains(layer_type)) {
      return r.Unsupported(layer_type, "one rope_parameters for every layer (not per layer type)");
    }
  }
  return ParseRopeDict(r, &c->rope_theta, &c->rope_scaling, c);
}

namespace {

// The config's sliding_window: `fallback` when absent (the architecture's default), 0 for null.
StatusOr<int64_t> SlidingWindowOr(const FieldReader& r, int64_t fallback) {
  if (!r.obj().contains("sliding_window")) return fallback;
  if (r.obj()["sliding_window"].is_null()) return int64_t{0};
  return r.Int("sliding_window", 1, kMaxDim, "a positive integer or null");
}

// layer_types as given (when present): "sliding_attention" layers get `window`, which must then
// be set (transformers raises otherwise), "full_attention" layers none; any other type, or one
// outside `allowed`, is refused naming `supported`.
Status ApplyLayerTypes(const FieldReader& r, int64_t window, const std::set<std::string>& allowed,
                       const std::string& supported, ModelConfig* c) {
  if (!r.Has("layer_types")) return Status::Ok();
  const int64_t n = c->num_hidden_layers;
  const json& types = r.obj()["layer_types"];
  if (!types.is_array() || static_cast<int64_t>(types.size()) != n) {
    return r.Error("layer_types", "a list of num_hidden_layers (" + std::to_string(n) + ") strings");
  }
  const std::string field = r.source() + ": field " + r.Field("layer_types");
  for (int64_t i = 0; i < n; ++i) {
    const json& t = types[static_cast<size_t>(i)];
    if (!t.is_string() || !allowed.count(t.get<std::string>())) {
      return Status::Unimplemented(field + "[" + std::to_string(i) + "] is " + Describe(t) +
                                   ", which this runtime does not support for " +
                                   c->architecture_name + "; supported: " + supported);
    }
    const bool sliding = t.get<std::string>() == "sliding_attention";
    if (sliding && window == 0) {
      return Status::Unimplemented(
          field + "[" + std::to_string(i) +
          "] is \"sliding_attention\" but no sliding window is set (sliding_window null or"
          " use_sliding_window false); supported: \"full_attention\" there");
    }
    c->layer_window[static_cast<size_t>(i)] = sliding ? window : 0;
  }
  return Status::Ok();
}

// Qwen2/Qwen3: layers from max_window_layers on slide when use_sliding_window is set.
Status ApplyQwenWindows(const FieldReader& r, ModelConfig* c) {
  DF11_ASSIGN_OR_RETURN(const bool use, r.BoolOr("use_sliding_window", false));
  DF11_ASSIGN_OR_RETURN(int64_t window, SlidingWindowOr(r, 4096));
  if (!use) window = 0;  // Qwen2Config: sliding_window = None unless use_sliding_window
  int64_t max_window_layers = 28;
  if (r.Has("max_window_layers")) {
    DF11_ASSIGN_OR_RETURN(max_window_layers,
                          r.Int("max_window_layers", 0, kMaxLayers,
                                "a non-negative integer (at most " + std::to_string(kMaxLayers) +
                                    ")"));
  }
  for (int64_t i = max_window_layers; i < c->num_hidden_layers && window > 0; ++i) {
    c->layer_window[static_cast<size_t>(i)] = window;
  }
  return ApplyLayerTypes(r, window, {"full_attention", "sliding_attention"},
                         "\"full_attention\", \"sliding_attention\"", c);
}

// Gemma 3: layer_types, or in older configs every sliding_window_pattern-th layer is global and
// the others slide.
Status ApplyGemma3Windows(const FieldReader& r, ModelConfig* c) {
  DF11_ASSIGN_OR_RETURN(const int64_t window, SlidingWindowOr(r, 4096));  // Gemma3TextConfig
  if (r.Has("layer_types")) {
    return ApplyLayerTypes(r, window, {"full_attention", "sliding_attention"},
                           "\"full_attention\", \"sliding_attention\"", c);
  }
  int64_t pattern = 6;
  if (r.Has("sliding_window_pattern")) {
    DF11_ASSIGN_OR_RETURN(pattern, r.Int("sliding_window_pattern", 1, kMaxLayers,
                                         "a positive integer (at most " +
                                             std::to_string(kMaxLayers) + ")"));
  }
  for (int64_t i = 0; i < c->num_hidden_layers; ++i) {
    if ((i + 1) % pattern == 0) continue;
    if (window == 0) {
      return Status::Unimplemented(
          r.source() + ": field " + r.Field("sliding_window") + " is null but layer " +
          std::to_string(i) + " is a sliding-window layer (sliding_window_pattern " +
          std::to_string(pattern) + "); supported: a positive integer");
    }
    c->layer_window[static_cast<size_t>(i)] = window;
  }
  return Status::Ok();
}

}  // namespace

Status ParseAttentionWindows(const FieldReader& r, ModelConfig* c) {
  c->layer_window.assign(static_cast<size_t>(c->num_hidden_layers), 0);
  switch (c->arch) {
    case Architecture::kLlama:
      // LlamaForCausalLM masks every layer causally; a sliding_window key would window only the
      // KV cache of transformers' generate() (config_keys.cc refuses it).
      return ApplyLayerTypes(r, 0, {"full_attention"}, "\"full_attention\" for every layer", c);
    case Architecture::kMistral: {
      DF11_ASSIGN_OR_RETURN(const int64_t window, SlidingWindowOr(r, 4096));  // MistralConfig
      c->layer_window.assign(static_cast<size_t>(c->num_hidden_layers), window);
      // MistralModel masks every layer alike; layer_types may only say the same.
      const std::string same = window > 0 ? "sliding_attention" : "full_attention";
      return ApplyLayerTypes(r, window, {same},
                             Quoted(same) + " for every layer (sliding_window " +
                                 (window > 0 ? std::to_string(window) : "null") + ")",
                             c);
    }
    case Architecture::kQwen2:
    case Architecture::kQwen3:
      return ApplyQwenWindows(r, c);
    case Architecture::kGemma3:
    case Architecture::kGemma3Multimodal:
      return ApplyGemma3Windows(r, c);
  }
  return Status::Ok();
}

Status ParseScalings(const FieldReader& r, ModelConfig* c) {
  c->attention_scale = 1.0 / std::sqrt(static_cast<double>(c->head_dim));
  if (!IsGemma3(c->arch)) return Status::Ok();
  // Gemma3TextScaledWordEmbedding: embed_scale (float32 sqrt(hidden_size)) cast to the weights'
  // dtype, BF16, before it multiplies the rows: sqrt(3840) = 61.97 becomes 62.
  c->embedding_multiplier =
      Bf16ToFloat(FloatToBf16(static_cast<float>(std::sqrt(static_cast<double>(c->hidden_size)))));
  c->norm_weight_offset = 1;  // Gemma3RMSNorm: x_normed * (1 + w)
  DF11_ASSIGN_OR_RETURN(const double scalar, r.PositiveNumberOr("query_pre_attn_scalar", 256));
  c->attention_scale = 1.0 / std::sqrt(scalar);
  // attn_logit_softcapping has no effect (config_keys.cc): transformers 5.24's Gemma3Attention
  // never passes it to the attention.
  if (c->arch == Architecture::kGemma3) {
    DF11_ASSIGN_OR_RETURN(c->final_logit_softcapping,
                          r.PositiveNumberOr("final_logit_softcapping", 0));
  } else if (r.Has("final_logit_softcapping")) {
    // Gemma3ForConditionalGeneration's forward returns the LM head's logits as they are.
    c->unused_keys.push_back(r.prefix() + "final_logit_softcapping");
  }
  return Status::Ok();
}

}  // namespace df11::config_parsing
