// SPDX-License-Identifier: Apache-2.0
// Is a DF11 model directory complete? Every command that reads one (verify, inspect, decompress,
// shard, the model loader) checks this before doing any work, so that a missing file or tensor
// is refused up front, naming it, instead of crashing or writing a model without a layer.
#pragma once

#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/df11_model_dir.h"

namespace df11 {

// Checks the DF11 structure of a directory against its dfloat11_config patterns:
//  - each unit (a module path matching a pattern, with at least one "<unit>.<field>" tensor) has
//    luts, encoded_exponent, sign_mantissa, output_positions and gaps, and split_positions when
//    its pattern concatenates several weights;
//  - each unit loads (dtypes, shapes and sizes of its fields agree; LoadDf11Unit) and holds as
//    many matrices as its pattern lists weights.
// InvalidArgument naming the file and the missing or inconsistent tensor or unit. Whether every
// weight the config implies is there (a whole unit file missing, say) with its shape, and nothing
// else, is CheckModelWeights' (weight_set.h), which runs after this check.
Status CheckDf11ModelDir(const Checkpoint& checkpoint, const std::vector<Df11Pattern>& patterns);

}  // namespace df11
