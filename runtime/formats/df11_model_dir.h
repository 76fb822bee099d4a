// SPDX-License-Identifier: Apache-2.0
// DF11 model directories in the published Hugging Face layout (spec section 3): the
// `dfloat11_config` block of config.json, its pattern_dict (full-match regexes on module paths,
// each naming the weights concatenated into one unit), and how units map to tensors and files.
#pragma once

#include <nlohmann/json.hpp>

#include <regex>
#include <string>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/model_tensors.h"

namespace df11 {

inline constexpr char kDf11Version[] = "0.5.0";

struct Df11Pattern {
  std::string source;              // the regex as written in config.json
  std::regex regex;                // compiled (ECMAScript; full match)
  std::vector<std::string> attrs;  // sub-module paths; empty: the module itself is the unit
};

struct Df11Config {
  std::string version = kDf11Version;
  int threads_per_block = 512;
  int bytes_per_thread = 8;
  std::vector<Df11Pattern> patterns;  // in config.json order
};

// Parses `dfloat11_config` (an object) found in `source` (a file name, for messages). Threads
// per block other than 512 or bytes per thread other than 8 are Unimplemented.
StatusOr<Df11Config> ParseDf11Config(const nlohmann::ordered_json& j, const std::string& source);
// Parses a pattern_dict given on the command line or in a file: {"regex": ["attr", ...], ...}.
StatusOr<std::vector<Df11Pattern>> ParsePatternDict(const nlohmann::ordered_json& j,
                                                    const std::string& source);
nlohmann::ordered_json Df11ConfigToJson(const Df11Config& config);

// The reference's pattern_dict for an architecture (DefaultPatternDict of its tensor table), by
// its transformers class name (LlamaForCausalLM, ...; Unimplemented for one without a table).
StatusOr<std::vector<Df11Pattern>> DefaultPatterns(const std::string& architecture);
StatusOr<std::vector<Df11Pattern>> DefaultPatterns(Architecture arch);

// One unit to build: its module path and the BF16 weight tensors it concatenates, in order.
struct UnitPlan {
  std::string name;
  std::vector<std::string> weights;
  // The checkpoint tensor each weight is read from, when it is not the weight's own name (the
  // embedding for a tied lm_head); empty otherwise.
  std::vector<std::string> sources;

  const std::string& SourceOf(size_t i) const { return sources.empty() ? weights[i] : sources[i]; }
};

// Units for a checkpoint with these tensor names: every module path (a dot-separated prefix of
// a tensor name) that fully matches a pattern; InvalidArgument when a matched module lacks one
// of the pattern's weights. Sorted by name; a module matched by two patterns is an error.
// `tied` (null unless the checkpoint ties lm_head to the embedding; TiedHeadNamesOf): when the
// checkpoint has no LM head weight but the embedding and the patterns match the LM head's module
// as a whole, that unit is planned with its weight read from the embedding, as the reference
// writes it (see TiedHeadNames).
StatusOr<std::vector<UnitPlan>> PlanUnits(const std::vector<Df11Pattern>& patterns,
                                          const std::vector<std::string>& tensor_names,
                                          const TiedHeadNames* tied);

// The weight tensor names of unit `name` (from the first pattern that matches it).
StatusOr<std::vector<std::string>> UnitWeightNames(const std::vector<Df11Pattern>& patterns,
                                                   const std::string& name);

// "model.layers.17" -> "model_layers_17.safetensors", as the reference names unit files.
std::string UnitFileName(const std::string& unit_name);

// The metadata key under which this project's unit files record each weight's shape.
inline constexpr char kShapesMetadataKey[] = "df11_shapes";

// Reads `dir`/config.json as ordered JSON (keeps pattern order).
StatusOr<nlohmann::ordered_json> ReadConfigJson(const std::string& dir);

}  // namespace df11
