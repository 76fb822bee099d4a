// SPDX-License-Identifier: Apache-2.0
// Internal to the config.json parser (model_config.cc, model_config_math.cc, config_keys.cc):
// typed field reads whose errors name the source file and the field path ("rope_scaling.factor",
// "text_config.sliding_window") and say what was expected, and the parts of ParseModelConfig that
// live in the other files.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

#include "runtime/core/status.h"
#include "runtime/formats/model_config.h"

namespace df11::config_parsing {

// Widths above this would overflow shape products; layer counts above kMaxLayers are not a model.
inline constexpr int64_t kMaxDim = std::numeric_limits<int32_t>::max();
inline constexpr int64_t kMaxLayers = 1 << 16;

inline std::string Quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// "4096 (string)" style description of a JSON value for error messages (truncated).
inline std::string Describe(const nlohmann::json& v) {
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text + " (" + v.type_name() + ")";
}

class FieldReader {
 public:
  FieldReader(const nlohmann::json& obj, std::string source, std::string prefix = "")
      : obj_(obj), source_(std::move(source)), prefix_(std::move(prefix)) {}

  // Absent and null both count as "not set".
  bool Has(const std::string& key) const {
    auto it = obj_.find(key);
    return it != obj_.end() && !it->is_null();
  }
  const nlohmann::json& Get(const std::string& key) const { return obj_.at(key); }
  // The field's name in messages: "rope_scaling.factor".
  std::string Field(const std::string& key) const { return Quoted(prefix_ + key); }

  // InvalidArgument: the field is missing or holds something else than `expected`.
  Status Error(const std::string& key, const std::string& expected) const {
    if (!obj_.contains(key)) {
      return Status::InvalidArgument(source_ + ": missing required field " + Field(key) +
                                     "; expected " + expected);
    }
    return Status::InvalidArgument(source_ + ": field " + Field(key) + " is " + Describe(Get(key)) +
                                   "; expected " + expected);
  }
  // Unimplemented: a valid value this runtime does not compute; `supported` lists what it does.
  Status Unsupported(const std::string& key, const std::string& supported) const {
    return Status::Unimplemented(source_ + ": field " + Field(key) + " is " + Describe(Get(key)) +
                                 ", which this runtime does not support; supported: " + supported);
  }

  StatusOr<int64_t> Int(const std::string& key, int64_t min, int64_t max,
                        const std::string& expected) const {
    if (!Has(key)) return Error(key, expected);
    const nlohmann::json& v = Get(key);
    if (!v.is_number_integer()) return Error(key, expected);
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(max)) {
      return Error(key, expected);
    }
    int64_t x = v.get<int64_t>();
    if (x < min || x > max) return Error(key, expected);
    return x;
  }
  StatusOr<int64_t> Dim(const std::string& key) const {
    return Int(key, 1, kMaxDim, "a positive integer (at most " + std::to_string(kMaxDim) + ")");
  }
  StatusOr<int64_t> DimOr(const std::string& key, int64_t fallback) const {
    if (!Has(key)) return fallback;
    return Dim(key);
  }
  StatusOr<double> PositiveNumberOr(const std::string& key, double fallback) const {
    if (!Has(key)) return fallback;
    const nlohmann::json& v = Get(key);
    if (!v.is_number() || !(v.get<double>() > 0)) return Error(key, "a positive number");
    return v.get<double>();
  }
  StatusOr<bool> BoolOr(const std::string& key, bool fallback) const {
    if (!Has(key)) return fallback;
    if (!Get(key).is_boolean()) return Error(key, "true or false");
    return Get(key).get<bool>();
  }
  StatusOr<std::string> StringOr(const std::string& key, std::string fallback) const {
    if (!Has(key)) return fallback;
    if (!Get(key).is_string()) return Error(key, "a string");
    return Get(key).get<std::string>();
  }

  const std::string& source() const { return source_; }
  const std::string& prefix() const { return prefix_; }
  const nlohmann::json& obj() const { return obj_; }
  // A reader of the object at `key` (which must be an object), its fields named "<key>.<field>".
  FieldReader Nested(const std::string& key) const {
    return FieldReader(obj_.at(key), source_, prefix_ + key + ".");
  }

 private:
  const nlohmann::json& obj_;
  std::string source_;
  std::string prefix_;
};

// model_config_math.cc: the keys that change the forward pass. Each fills its fields of *c from
// the language model's fields `r` (c's dims already parsed) or returns InvalidArgument
// (ill-typed) / Unimplemented (a value this runtime does not compute).
Status ParseHiddenAct(const FieldReader& r, ModelConfig* c);
Status ParseRope(const FieldReader& r, ModelConfig* c);
Status ParseAttentionWindows(const FieldReader& r, ModelConfig* c);
// Gemma 3's embedding multiplier, (1 + w) norms, query_pre_attn_scalar and final softcapping; the
// defaults (1, 0, head_dim^-0.5, none) for the other architectures.
Status ParseScalings(const FieldReader& r, ModelConfig* c);

// config_keys.cc: refuses (Unimplemented) keys of `r`'s object whose value changes the math in a
// way this runtime does not compute (quantization_config, mlp_bias, ...) and lists the keys
// `table` does not use in c->unused_keys (named with r's prefix). `table` is c->arch, or the text
// model's table for the "text_config" of a multimodal config.
Status CheckConfigKeys(const FieldReader& r, Architecture table, ModelConfig* c);

}  // namespace df11::config_parsing
