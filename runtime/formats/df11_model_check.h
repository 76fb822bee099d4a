// SPDX-License-Identifier: Apache-2.0
// Is a DF11 model directory complete? Every command that reads one (verify, inspect, decompress,
// shard, the model loader) checks this before doing any work, so that a missing file or tensor
// is refused up front, naming it, instead of crashing or writing a model without a layer.
#pragma once

#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/df11_model_dir.h"
#include "runtime/formats/model_config.h"

namespace df11 {

// Checks the weights of a DF11 directory against its dfloat11_config patterns and, when the
// architecture is known (`config` not null), its config.json:
//  - each unit (a module path matching a pattern, with at least one "<unit>.<field>" tensor) has
//    luts, encoded_exponent, sign_mantissa, output_positions and gaps, and split_positions when
//    its pattern concatenates several weights;
//  - each unit loads (dtypes, shapes and sizes of its fields agree; LoadDf11Unit) and holds as
//    many matrices as its pattern lists weights, each with the element count `config` implies;
//  - every tensor `config` implies (ExpectedTensors) is stored, as a tensor or inside a unit.
// InvalidArgument naming the file (or the directory and the file the published layout keeps the
// missing thing in) and the missing or inconsistent tensor or unit.
Status CheckDf11ModelDir(const Checkpoint& checkpoint, const std::vector<Df11Pattern>& patterns,
                         const ModelConfig* config);

}  // namespace df11
