// SPDX-License-Identifier: Apache-2.0
// The tokenizer.json "normalizer": null, NFC, Replace (literal string), or a Sequence of those,
// applied in order to each piece of text that is not an added token.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/status.h"

namespace df11 {

class Normalizer {
 public:
  // `config` is the "normalizer" value of tokenizer.json (may be null).
  static StatusOr<Normalizer> FromJson(const nlohmann::json& config);

  bool empty() const { return steps_.empty(); }
  // `text` must be valid UTF-8.
  std::string Apply(std::string_view text) const;

 private:
  struct Step {
    enum class Kind { kNfc, kReplace } kind;
    std::string from, to;  // kReplace only
  };
  static Status AddSteps(const nlohmann::json& config, std::vector<Step>* steps);

  std::vector<Step> steps_;
};

}  // namespace df11
