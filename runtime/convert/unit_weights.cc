// SPDX-License-Identifier: Apache-2.0
#include "runtime/convert/unit_weights.h"

#include <set>

#include "runtime/formats/df11_model_check.h"
#include "runtime/formats/weight_set.h"
#include "runtime/formats/model_tensors.h"

namespace df11 {

StatusOr<Df11Model> OpenDf11Model(const std::string& dir) {
  DF11_ASSIGN_OR_RETURN(nlohmann::ordered_json config, ReadConfigJson(dir));
  if (!config.contains("dfloat11_config")) {
    return Status::InvalidArgument(dir + "/config.json has no dfloat11_config: not a DF11 model "
                                   "directory");
  }
  DF11_ASSIGN_OR_RETURN(Df11Config df11,
                        ParseDf11Config(config["dfloat11_config"], dir + "/config.json"));
  DF11_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::Open(dir));
  std::optional<ModelConfig> model;
  auto parsed = ParseModelConfig(nlohmann::json::parse(config.dump()), dir + "/config.json",
                                 ConfigUse::kConvert);
  if (parsed.ok()) model = std::move(parsed).value();
  DF11_RETURN_IF_ERROR(CheckDf11ModelDir(ckpt, df11.patterns));
  // A model this runtime serves: its weights must be the config's (units named by the patterns).
  if (model.has_value() && model->unsupported.empty()) {
    DF11_RETURN_IF_ERROR(CheckModelWeights(*model, ckpt, df11.patterns, dir));
  }
  Df11Model m{dir, std::move(config), std::move(df11), std::move(model), std::move(ckpt), {}};
  m.units = FindDf11Units(m.checkpoint);
  return m;
}

bool IsUnitField(const Df11Model& model, const std::string& tensor_name) {
  const size_t dot = tensor_name.rfind('.');
  if (dot == std::string::npos) return false;
  const std::string field = tensor_name.substr(dot + 1);
  bool is_field = false;
  for (const char* f : kDf11UnitFields) is_field = is_field || field == f;
  return is_field && model.checkpoint.Find(tensor_name.substr(0, dot) + ".encoded_exponent");
}

StatusOr<std::vector<UnitWeight>> ResolveUnitWeights(const Df11Model& model,
                                                     const Df11Unit& unit) {
  DF11_ASSIGN_OR_RETURN(std::vector<std::string> names,
                        UnitWeightNames(model.df11.patterns, unit.name));
  if (names.size() != unit.split_positions.size() + 1) {
    return Status::Corruption("DF11 unit " + unit.name + ": its pattern lists " +
                              std::to_string(names.size()) + " weights but split_positions "
                              "describes " + std::to_string(unit.split_positions.size() + 1));
  }
  // Shapes recorded by this project's compressor, if any.
  nlohmann::json recorded;
  const SafetensorsFile* file = model.checkpoint.FileOf(unit.name + ".encoded_exponent");
  auto it = file->metadata().find(kShapesMetadataKey);
  if (it != file->metadata().end()) {
    recorded = nlohmann::json::parse(it->second, nullptr, false);
  }
  std::vector<UnitWeight> weights;
  for (size_t i = 0; i < names.size(); ++i) {
    UnitWeight w;
    w.name = names[i];
    std::tie(w.begin, w.end) = unit.MatrixRange(i);
    if (recorded.is_object() && recorded.contains(w.name) && recorded[w.name].is_array()) {
      for (const auto& d : recorded[w.name]) {
        if (!d.is_number_integer() || d.get<int64_t>() < 0) {
          return Status::Corruption(file->path() + ": metadata df11_shapes[" + w.name +
                                    "] must hold non-negative integers");
        }
        w.shape.push_back(d.get<int64_t>());
      }
    } else if (model.model.has_value()) {
      const std::string module = w.name.substr(0, w.name.size() - std::string(".weight").size());
      DF11_ASSIGN_OR_RETURN(w.shape, WeightShape(*model.model, module));
    } else {
      return Status::Corruption("DF11 unit " + unit.name + ": the shape of " + w.name +
                                " is neither in the file's metadata nor derivable from "
                                "config.json (unsupported architecture)");
    }
    int64_t numel = 1;
    for (int64_t d : w.shape) numel *= d;
    if (numel != w.end - w.begin) {
      return Status::Corruption("DF11 unit " + unit.name + ": " + w.name + " has shape of " +
                                std::to_string(numel) + " elements but the unit holds " +
                                std::to_string(w.end - w.begin) + " for it");
    }
    weights.push_back(std::move(w));
  }
  return weights;
}

}  // namespace df11
