// SPDX-License-Identifier: Apache-2.0
// The BF16 weights inside a DF11 model's units: which tensor names and shapes each unit holds
// (names from dfloat11_config's patterns; shapes from this project's file metadata, else from
// the architecture in config.json, as the reference's files store none).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/df11_model_dir.h"
#include "runtime/formats/df11_unit.h"
#include "runtime/formats/model_config.h"

namespace df11 {

struct UnitWeight {
  std::string name;            // e.g. "model.layers.0.self_attn.q_proj.weight"
  std::vector<int64_t> shape;  // e.g. {4096, 4096}
  int64_t begin = 0, end = 0;  // element range inside the unit
};

// An opened DF11 model directory: config, checkpoint and unit list.
struct Df11Model {
  std::string dir;
  nlohmann::ordered_json config_json;
  Df11Config df11;
  std::optional<ModelConfig> model;  // when config.json describes a supported architecture
  Checkpoint checkpoint;
  std::vector<std::string> units;
};

// Opens `dir`, checks that it is complete (CheckDf11ModelDir) and, when its config.json describes
// a model this runtime serves (ConfigUse::kConvert, nothing unsupported), that the weights match
// it (CheckModelWeights), before anything is decoded. InvalidArgument naming what is wrong.
StatusOr<Df11Model> OpenDf11Model(const std::string& dir);

// Names, shapes and ranges of the weights in `unit`; Corruption when they disagree with the
// unit's split_positions or element count.
StatusOr<std::vector<UnitWeight>> ResolveUnitWeights(const Df11Model& model, const Df11Unit& unit);

// True for tensors that are fields of a unit ("<unit>.luts", ...).
bool IsUnitField(const Df11Model& model, const std::string& tensor_name);

}  // namespace df11
