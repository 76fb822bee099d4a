// SPDX-License-Identifier: Apache-2.0
#include "runtime/formats/df11_model_dir.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "runtime/core/file_util.h"

namespace df11 {
namespace {

std::vector<std::string> WeightsOf(const Df11Pattern& p, const std::string& module) {
  std::vector<std::string> weights;
  if (p.attrs.empty()) {
    weights.push_back(module + ".weight");
  } else {
    for (const std::string& a : p.attrs) weights.push_back(module + "." + a + ".weight");
  }
  return weights;
}

}  // namespace

StatusOr<std::vector<Df11Pattern>> ParsePatternDict(const nlohmann::ordered_json& j,
                                                    const std::string& source) {
  if (!j.is_object()) {
    return Status::InvalidArgument(source + ": pattern_dict must be an object of "
                                   "{\"regex\": [\"sub.module\", ...]}");
  }
  std::vector<Df11Pattern> patterns;
  for (const auto& [key, value] : j.items()) {
    Df11Pattern p;
    p.source = key;
    try {
      p.regex = std::regex(key, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      return Status::InvalidArgument(source + ": pattern_dict key \"" + key +
                                     "\" is not a valid regex: " + e.what());
    }
    if (!value.is_array()) {
      return Status::InvalidArgument(source + ": pattern_dict[\"" + key +
                                     "\"] must be a list of sub-module names");
    }
    for (const auto& a : value) {
      if (!a.is_string() || a.get<std::string>().empty()) {
        return Status::InvalidArgument(source + ": pattern_dict[\"" + key +
                                       "\"] must hold non-empty strings");
      }
      p.attrs.push_back(a.get<std::string>());
    }
    patterns.push_back(std::move(p));
  }
  if (patterns.empty()) return Status::InvalidArgument(source + ": pattern_dict is empty");
  return patterns;
}

StatusOr<Df11Config> ParseDf11Config(const nlohmann::ordered_json& j, const std::string& source) {
  if (!j.is_object()) {
    return Status::InvalidArgument(source + ": dfloat11_config must be an object");
  }
  Df11Config c;
  if (j.contains("version")) {
    if (!j["version"].is_string()) {
      return Status::InvalidArgument(source + ": dfloat11_config.version must be a string");
    }
    c.version = j["version"].get<std::string>();
  }
  if (j.contains("threads_per_block")) {
    const auto& t = j["threads_per_block"];
    const auto& first = t.is_array() && t.size() == 1 ? t[0] : t;
    if (!first.is_number_integer() || first.get<int64_t>() != 512) {
      return Status::Unimplemented(source + ": dfloat11_config.threads_per_block is " + t.dump() +
                                   "; only [512] is supported");
    }
  }
  if (j.contains("bytes_per_thread")) {
    const auto& b = j["bytes_per_thread"];
    if (!b.is_number_integer() || b.get<int64_t>() != 8) {
      return Status::Unimplemented(source + ": dfloat11_config.bytes_per_thread is " + b.dump() +
                                   "; only 8 is supported");
    }
  }
  if (!j.contains("pattern_dict")) {
    return Status::InvalidArgument(source + ": dfloat11_config has no pattern_dict");
  }
  DF11_ASSIGN_OR_RETURN(c.patterns,
                        ParsePatternDict(j["pattern_dict"], source + ": dfloat11_config"));
  return c;
}

nlohmann::ordered_json Df11ConfigToJson(const Df11Config& config) {
  nlohmann::ordered_json patterns = nlohmann::ordered_json::object();
  for (const Df11Pattern& p : config.patterns) patterns[p.source] = p.attrs;
  nlohmann::ordered_json j;
  j["version"] = config.version;
  j["threads_per_block"] = {config.threads_per_block};
  j["bytes_per_thread"] = config.bytes_per_thread;
  j["pattern_dict"] = patterns;
  return j;
}

StatusOr<std::vector<Df11Pattern>> DefaultPatterns(const std::string& architecture) {
  const std::optional<Architecture> arch = ArchitectureOfClass(architecture);
  if (!arch) {
    return Status::Unimplemented("no default DF11 pattern for architecture \"" + architecture +
                                 "\" (known: " + SupportedArchitectureNames() +
                                 "); pass --pattern-dict");
  }
  return DefaultPatterns(*arch);
}

StatusOr<std::vector<Df11Pattern>> DefaultPatterns(Architecture arch) {
  return ParsePatternDict(DefaultPatternDict(TensorsOf(arch)), "default pattern_dict");
}

StatusOr<std::vector<UnitPlan>> PlanUnits(const std::vector<Df11Pattern>& patterns,
                                          const std::vector<std::string>& tensor_names,
                                          const TiedHeadNames* tied) {
  const std::set<std::string> names(tensor_names.begin(), tensor_names.end());
  std::set<std::string> modules;
  for (const std::string& t : tensor_names) {
    for (size_t dot = t.find('.'); dot != std::string::npos; dot = t.find('.', dot + 1)) {
      modules.insert(t.substr(0, dot));
    }
  }
  std::map<std::string, UnitPlan> units;
  std::map<std::string, std::string> owner;  // weight -> unit
  for (const std::string& m : modules) {
    for (const Df11Pattern& p : patterns) {
      if (!std::regex_match(m, p.regex)) continue;
      UnitPlan plan{m, WeightsOf(p, m), {}};
      for (const std::string& w : plan.weights) {
        if (!names.count(w)) {
          return Status::InvalidArgument("pattern \"" + p.source + "\" matches module " + m +
                                         " but the checkpoint has no tensor " + w);
        }
        auto [it, inserted] = owner.emplace(w, m);
        if (!inserted) {
          return Status::InvalidArgument("tensor " + w + " would be in two units: " + it->second +
                                         " and " + m + " (overlapping patterns)");
        }
      }
      units[m] = std::move(plan);
      break;
    }
  }
  if (tied != nullptr && !names.count(tied->weight) && names.count(tied->embedding) &&
      !units.count(tied->unit)) {
    for (const Df11Pattern& p : patterns) {
      if (!std::regex_match(tied->unit, p.regex)) continue;
      if (p.attrs.empty()) {
        units[tied->unit] = UnitPlan{tied->unit, {tied->weight}, {tied->embedding}};
      }
      break;
    }
  }
  std::vector<UnitPlan> out;
  for (auto& [name, plan] : units) out.push_back(std::move(plan));
  return out;
}

StatusOr<std::vector<std::string>> UnitWeightNames(const std::vector<Df11Pattern>& patterns,
                                                   const std::string& name) {
  for (const Df11Pattern& p : patterns) {
    if (std::regex_match(name, p.regex)) return WeightsOf(p, name);
  }
  return Status::Corruption("DF11 unit " + name + " matches no pattern of dfloat11_config");
}

std::string UnitFileName(const std::string& unit_name) {
  std::string f = unit_name;
  std::replace(f.begin(), f.end(), '.', '_');
  return f + ".safetensors";
}

StatusOr<nlohmann::ordered_json> ReadConfigJson(const std::string& dir) {
  const std::string path = JoinPath(dir, "config.json");
  DF11_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Corruption(path + ": not valid JSON");
  if (!j.is_object()) return Status::Corruption(path + ": expected a JSON object");
  return j;
}

}  // namespace df11
