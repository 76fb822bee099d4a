// SPDX-License-Identifier: Apache-2.0
// One rank's weights from a sharded model directory (`df11 shard`): manifest.json says which
// file, layers, heads, MLP rows and vocabulary rows the rank holds; only that file is mapped, and
// its size and xxh64 checksum are checked before use.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "runtime/core/status.h"
#include "runtime/model/model_weights.h"

namespace df11 {

inline constexpr char kShardManifestName[] = "manifest.json";

// The parts of manifest.json the runtime needs.
struct ShardLayout {
  int tp = 1;
  int pp = 1;
  int world_size = 1;
  nlohmann::json manifest;

  int Stage(int rank) const { return rank / tp; }
  int TpRank(int rank) const { return rank % tp; }
  int Rank(int stage, int tp_rank) const { return stage * tp + tp_rank; }
};

bool IsShardedModelDir(const std::string& dir);

// Reads and checks manifest.json (format, version, layout, one entry per rank).
StatusOr<ShardLayout> ReadShardLayout(const std::string& dir);

// Loads rank `rank`'s weights; verifies its file's size and checksum first.
StatusOr<ModelWeights> LoadShardWeights(const std::string& dir, const ShardLayout& layout,
                                        int rank);

}  // namespace df11
