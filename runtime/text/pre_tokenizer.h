// SPDX-License-Identifier: Apache-2.0
// The tokenizer.json "pre_tokenizer": Split (regex or literal pattern; behaviour Isolated,
// Removed, MergedWithPrevious or MergedWithNext; invert), ByteLevel (add_prefix_space, use_regex),
// or a Sequence of those. Regexes are PCRE2 with UTF + UCP, JIT-compiled once; Split is const and
// thread-safe (match data is per call).
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/core/status.h"

namespace df11 {

class Regex;  // a compiled PCRE2 pattern (pre_tokenizer.cc)

class PreTokenizer {
 public:
  // `config` is the "pre_tokenizer" value of tokenizer.json (may be null: the whole text is one
  // word).
  static StatusOr<PreTokenizer> FromJson(const nlohmann::json& config);

  // Splits valid UTF-8 `text` into words, in order; after a ByteLevel step the words are
  // byte-level strings (see byte_level.h). Empty words are dropped.
  std::vector<std::string> Split(std::string_view text) const;

 private:
  enum class Behavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext };
  struct Step {
    enum class Kind { kSplit, kByteLevel } kind;
    std::shared_ptr<const Regex> regex;  // kSplit, or kByteLevel with use_regex
    Behavior behavior = Behavior::kIsolated;
    bool invert = false;
    bool add_prefix_space = false;  // kByteLevel only
  };
  static Status AddSteps(const nlohmann::json& config, std::vector<Step>* steps);
  static void ApplyStep(const Step& step, std::string_view piece, std::vector<std::string>* out);

  std::vector<Step> steps_;
};

}  // namespace df11
