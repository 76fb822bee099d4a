// SPDX-License-Identifier: Apache-2.0
// The manifest of a sharded model directory (`df11 shard`, read by every rank): format and
// version, the codec of the rank files' matrices ("df11" or "ew4"), the parallel layout, the source model's config, and per rank its file, size, xxh64
// and the ranges of layers, heads, MLP rows and vocabulary it holds. Reading validates every
// field it relies on; a rank checks its own file against it before mapping the weights.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "runtime/core/status.h"

namespace df11 {

inline constexpr char kShardManifestName[] = "manifest.json";
inline constexpr char kShardFormat[] = "df11-sharded";
inline constexpr int kShardFormatVersion = 1;

// "0123456789abcdef": a 64-bit hash as the manifest writes it (16 lowercase hex digits).
std::string Hex64(uint64_t h);

// Reads and validates `dir`/manifest.json: format and version, layout (tp, pp, world_size),
// one entry per rank in rank order with a plain file name, bytes and a 16-digit xxh64.
// NotFound when absent; Corruption naming the field otherwise; Unimplemented for a newer version.
StatusOr<nlohmann::json> ReadShardManifest(const std::string& dir);

// Checks rank `rank`'s file against the manifest: its size, then the xxh64 of the whole file.
// Corruption naming the file with the expected and actual value; NotFound when the file is missing.
Status VerifyShardFile(const nlohmann::json& manifest, int rank, const std::string& dir);

}  // namespace df11
