// SPDX-License-Identifier: Apache-2.0
// One rank's weights from a sharded model directory (`df11 shard`): manifest.json says which
// file, layers, heads, MLP rows and vocabulary rows the rank holds; only that file is mapped, and
// its size and xxh64 checksum are checked before use.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "parallel/world.h"
#include "runtime/core/status.h"
#include "runtime/formats/shard_manifest.h"
#include "runtime/model/model_weights.h"

namespace df11 {

// The parts of manifest.json the runtime needs: the parallel layout (tp, pp and the rank
// mapping) and the manifest itself.
struct ShardLayout : ParallelLayout {
  nlohmann::json manifest;
};

bool IsShardedModelDir(const std::string& dir);

// Reads and checks manifest.json (ReadShardManifest) and that it holds the model's config.
StatusOr<ShardLayout> ReadShardLayout(const std::string& dir);

// Loads rank `rank`'s weights; verifies its file's size and checksum first.
StatusOr<ModelWeights> LoadShardWeights(const std::string& dir, const ShardLayout& layout,
                                        int rank);

}  // namespace df11
