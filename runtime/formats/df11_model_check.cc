// SPDX-License-Identifier: Apache-2.0
#include "runtime/formats/df11_model_check.h"

#include <map>
#include <optional>
#include <set>
#include <string>

#include "runtime/formats/df11_unit.h"

namespace df11 {
namespace {

// Fields every unit stores; split_positions only matters for units of several matrices (releases
// before 0.3 omit it for single ones).
const char* const kRequiredFields[] = {"luts", "encoded_exponent", "sign_mantissa",
                                       "output_positions", "gaps"};

// The pattern that decides unit `module` (the first that fully matches it), or null.
const Df11Pattern* PatternOf(const std::vector<Df11Pattern>& patterns, const std::string& module) {
  for (const Df11Pattern& p : patterns) {
    if (std::regex_match(module, p.regex)) return &p;
  }
  return nullptr;
}

// "<unit>.<field>" -> unit, for the DF11 field names; nullopt for any other tensor name.
std::optional<std::string> UnitOfField(const std::string& tensor) {
  const size_t dot = tensor.rfind('.');
  if (dot == std::string::npos || dot == 0) return std::nullopt;
  const std::string field = tensor.substr(dot + 1);
  for (const char* f : kDf11UnitFields) {
    if (field == f) return tensor.substr(0, dot);
  }
  return std::nullopt;
}

std::string FileNameOf(const Checkpoint& ckpt, const std::string& tensor) {
  const SafetensorsFile* f = ckpt.FileOf(tensor);
  return f != nullptr ? f->path() : ckpt.dir();
}

// The unit a weight of the config belongs to under these patterns ("" when none): the longest
// dot-separated prefix of `tensor` whose pattern lists it.
std::string HoldingUnit(const std::vector<Df11Pattern>& patterns, const std::string& tensor) {
  std::string unit;
  for (size_t dot = tensor.find('.'); dot != std::string::npos; dot = tensor.find('.', dot + 1)) {
    const std::string module = tensor.substr(0, dot);
    const Df11Pattern* p = PatternOf(patterns, module);
    if (p == nullptr) continue;
    auto names = UnitWeightNames(patterns, module);
    if (!names.ok()) continue;
    for (const std::string& w : *names) {
      if (w == tensor) unit = module;
    }
  }
  return unit;
}

Status CheckUnitFields(const Checkpoint& ckpt, const std::string& unit, size_t n_weights,
                       const std::string& file) {
  for (const char* field : kRequiredFields) {
    if (ckpt.Find(unit + "." + field) == nullptr) {
      return Status::InvalidArgument(
          file + ": DF11 unit " + unit + " has no tensor " + unit + "." + field +
          " (a unit stores luts, encoded_exponent, sign_mantissa, output_positions, gaps and "
          "split_positions)");
    }
  }
  if (n_weights > 1 && ckpt.Find(unit + ".split_positions") == nullptr) {
    return Status::InvalidArgument(file + ": DF11 unit " + unit + " has no tensor " + unit +
                                   ".split_positions (its pattern concatenates " +
                                   std::to_string(n_weights) + " weights)");
  }
  return Status::Ok();
}

Status CheckUnitSizes(const Checkpoint& ckpt, const std::string& unit,
                      const std::vector<std::string>& weights, const ModelConfig* config,
                      const std::string& file) {
  StatusOr<Df11Unit> loaded = LoadDf11Unit(ckpt, unit);
  if (!loaded.ok()) return Status::InvalidArgument(file + ": " + loaded.status().message());
  if (weights.size() != loaded->split_positions.size() + 1) {
    return Status::InvalidArgument(
        file + ": DF11 unit " + unit + ": its pattern lists " + std::to_string(weights.size()) +
        " weights but split_positions describes " +
        std::to_string(loaded->split_positions.size() + 1) + " matrices");
  }
  if (config == nullptr) return Status::Ok();
  for (size_t i = 0; i < weights.size(); ++i) {
    const std::string module = weights[i].substr(0, weights[i].rfind('.'));
    StatusOr<std::vector<int64_t>> shape = WeightShape(*config, module);
    if (!shape.ok()) continue;  // not a module the architecture knows (a custom pattern_dict)
    int64_t numel = 1;
    for (int64_t d : *shape) numel *= d;
    const auto [begin, end] = loaded->MatrixRange(i);
    if (end - begin != numel) {
      return Status::InvalidArgument(
          file + ": DF11 unit " + unit + " holds " + std::to_string(end - begin) +
          " elements for " + weights[i] + "; config.json implies " + std::to_string(numel) +
          " ([" + std::to_string((*shape)[0]) + ", " + std::to_string((*shape)[1]) + "])");
    }
  }
  return Status::Ok();
}

}  // namespace

Status CheckDf11ModelDir(const Checkpoint& ckpt, const std::vector<Df11Pattern>& patterns,
                         const ModelConfig* config) {
  // Units by any of their fields, so that a unit missing encoded_exponent is still found.
  std::map<std::string, std::vector<std::string>> units;  // unit -> its weights
  for (const std::string& name : ckpt.tensor_names()) {
    std::optional<std::string> unit = UnitOfField(name);
    if (!unit || units.count(*unit)) continue;
    if (PatternOf(patterns, *unit) == nullptr) {
      if (name != *unit + ".encoded_exponent") continue;  // a plain tensor with such a name
      return Status::InvalidArgument(FileNameOf(ckpt, name) + ": DF11 unit " + *unit +
                                     " matches no pattern of dfloat11_config.pattern_dict");
    }
    DF11_ASSIGN_OR_RETURN(units[*unit], UnitWeightNames(patterns, *unit));
  }
  for (const auto& [unit, weights] : units) {
    std::string file = ckpt.dir();
    for (const char* f : kDf11UnitFields) {
      if (ckpt.Find(unit + "." + f) != nullptr) {
        file = FileNameOf(ckpt, unit + "." + f);
        break;
      }
    }
    DF11_RETURN_IF_ERROR(CheckUnitFields(ckpt, unit, weights.size(), file));
    DF11_RETURN_IF_ERROR(CheckUnitSizes(ckpt, unit, weights, config, file));
  }
  if (config == nullptr) return Status::Ok();
  std::set<std::string> in_units;
  for (const auto& [unit, weights] : units) in_units.insert(weights.begin(), weights.end());
  for (const auto& [tensor, shape] : ExpectedTensors(*config)) {
    if (in_units.count(tensor) || ckpt.Find(tensor) != nullptr) continue;
    const std::string unit = HoldingUnit(patterns, tensor);
    if (!unit.empty()) {
      return Status::InvalidArgument(
          ckpt.dir() + ": DF11 unit " + unit + " is missing (no tensor " + unit +
          ".encoded_exponent in any file; the published layout keeps it in " +
          UnitFileName(unit) + "): config.json implies " + tensor);
    }
    // The published layout keeps a module's other tensors in its unit's file.
    std::string file = "model.safetensors";
    for (size_t dot = tensor.find('.'); dot != std::string::npos; dot = tensor.find('.', dot + 1)) {
      if (PatternOf(patterns, tensor.substr(0, dot))) file = UnitFileName(tensor.substr(0, dot));
    }
    return Status::InvalidArgument(ckpt.dir() + ": tensor " + tensor +
                                   " is missing from every safetensors file (the published "
                                   "layout keeps it in " + file + "); config.json implies it");
  }
  return Status::Ok();
}

}  // namespace df11
