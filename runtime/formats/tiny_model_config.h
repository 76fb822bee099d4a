// SPDX-License-Identifier: Apache-2.0
// Internal to MakeTinyModel (tiny_model.cc): the config.json it writes for each architecture, and
// the tensors besides the served ones that a checkpoint of the architecture holds (a small SigLIP
// vision tower and projector for Gemma3ForConditionalGeneration, named as transformers saves
// them).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/formats/model_config.h"
#include "runtime/formats/tiny_model.h"

namespace df11::tiny_model {

// config.json for `o` (validated) of `arch`, with this vocabulary and token ids.
nlohmann::json BuildConfig(const TinyModelOptions& o, Architecture arch, int64_t vocab,
                           const std::optional<int64_t>& bos, const std::optional<int64_t>& eos);

struct ExtraTensor {
  std::string name;
  std::vector<int64_t> shape;
  float mean = 0;  // of its random values: 1 for a LayerNorm's weight
};

// The unserved tensors of a config BuildConfig wrote (its vision tower); none for text models.
std::vector<ExtraTensor> UnservedTensors(const ModelConfig& config);

}  // namespace df11::tiny_model
