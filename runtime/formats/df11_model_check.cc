// SPDX-License-Identifier: Apache-2.0
#include "runtime/formats/df11_model_check.h"

#include <map>
#include <optional>
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

// The unit loads (field dtypes, shapes and sizes agree) and holds as many matrices as its pattern
// lists weights. Their sizes against config.json are CheckModelWeights' (weight_set.h).
Status CheckUnitLoads(const Checkpoint& ckpt, const std::string& unit,
                      const std::vector<std::string>& weights, const std::string& file) {
  StatusOr<Df11Unit> loaded = LoadDf11Unit(ckpt, unit);
  if (!loaded.ok()) return Status::InvalidArgument(file + ": " + loaded.status().message());
  if (weights.size() != loaded->split_positions.size() + 1) {
    return Status::InvalidArgument(
        file + ": DF11 unit " + unit + ": its pattern lists " + std::to_string(weights.size()) +
        " weights but split_positions describes " +
        std::to_string(loaded->split_positions.size() + 1) + " matrices");
  }
  return Status::Ok();
}

}  // namespace

Status CheckDf11ModelDir(const Checkpoint& ckpt, const std::vector<Df11Pattern>& patterns) {
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
    DF11_RETURN_IF_ERROR(CheckUnitLoads(ckpt, unit, weights, file));
  }
  return Status::Ok();
}

}  // namespace df11
