// SPDX-License-Identifier: Apache-2.0
// A model directory's weights against its config: every tensor the config implies is present,
// BF16, with its shape, and nothing else is (except the leftovers transformers ignores too:
// "rotary_emb.inv_freq" buffers of old checkpoints, and the modules the architecture's table
// recognises without serving them: a multimodal model's vision tower). Decided from the safetensors headers, the
// DF11 pattern dict, the units' split_positions and recorded shapes: before any weight is read
// or decoded. Used by every loader (BF16, DF11, a rank's shard) and by the converters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/df11_model_dir.h"
#include "runtime/formats/model_config.h"
#include "runtime/formats/model_tensors.h"

namespace df11 {

// One weight as stored: a plain tensor, or a weight inside a DF11 unit.
struct StoredWeight {
  std::string name;
  DType dtype = DType::kBF16;  // BF16 inside a unit
  std::vector<int64_t> shape;  // empty inside a unit whose file records no shapes (the reference's)
  int64_t numel = 0;
  // "model.safetensors", "DF11 unit model.layers.3 (model_layers_3.safetensors)"
  std::string where;
};

// The weights of `ckpt`: its tensors that are not fields of a DF11 unit or an ew4 weight, the
// ew4 weights (ew4_tensors.h), and the weights inside each unit, named by `patterns` (the dfloat11_config pattern dict), sized by split_positions,
// shaped by the file's df11_shapes metadata when present. Corruption naming the unit when a unit
// lacks sign_mantissa, matches no pattern, or holds another number of weights than its pattern.
StatusOr<std::vector<StoredWeight>> ListStoredWeights(const Checkpoint& ckpt,
                                                      const std::vector<Df11Pattern>& patterns);

// InvalidArgument naming `source` (the model directory or shard file) and the first problems
// (tensor, where it is, its dtype/shape and what config.json implies) unless `stored` holds
// exactly the required tensors of ModelTensors(c, part), each BF16 with its shape, and perhaps
// its optional ones (a tied model's lm_head.weight: transformers ties it to the embedding; the
// reference DF11 encoder stores it).
// `patterns` (a DF11 directory's pattern dict, or empty) only sharpen the message for a missing
// weight: the DF11 unit that would hold it and the file the published layout keeps it in.
Status CheckWeightSet(const ModelConfig& c, const ModelPart& part,
                      const std::vector<StoredWeight>& stored, const std::string& source,
                      const std::vector<Df11Pattern>& patterns = {});

// ListStoredWeights + CheckWeightSet over the whole model in `ckpt`.
Status CheckModelWeights(const ModelConfig& c, const Checkpoint& ckpt,
                         const std::vector<Df11Pattern>& patterns, const std::string& source);

}  // namespace df11
