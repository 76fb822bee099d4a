// SPDX-License-Identifier: Apache-2.0
#include "runtime/formats/shard_manifest.h"

#include <xxhash.h>

#include <cstdio>
#include <filesystem>

#include "runtime/core/file_util.h"
#include "runtime/core/mapped_file.h"

namespace df11 {
namespace {

// The string at `key` of object `j`; "" when it is absent or not a string.
std::string StringField(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::string Hex64(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

StatusOr<nlohmann::json> ReadShardManifest(const std::string& dir) {
  const std::string path = JoinPath(dir, kShardManifestName);
  DF11_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json m = nlohmann::json::parse(text, nullptr, false);
  auto bad = [&](const std::string& what) { return Status::Corruption(path + ": " + what); };
  if (!m.is_object()) return bad("not a JSON object");
  if (StringField(m, "format") != kShardFormat) {
    return bad(std::string("\"format\" must be \"") + kShardFormat + "\"");
  }
  if (!m.contains("format_version") || !m["format_version"].is_number_integer()) {
    return bad("\"format_version\" must be an integer");
  }
  if (m["format_version"].get<int64_t>() != kShardFormatVersion) {
    return Status::Unimplemented(path + ": format_version " + m["format_version"].dump() +
                                 "; this build reads version " +
                                 std::to_string(kShardFormatVersion));
  }
  // "codec" (the rank files' matrices: "df11" units or "ew4" weights) is absent in files written
  // before ew4 existed: DF11.
  if (m.contains("codec") && StringField(m, "codec") != "df11" && StringField(m, "codec") != "ew4") {
    return bad("\"codec\" must be \"df11\" or \"ew4\"");
  }
  const nlohmann::json& l = m.value("layout", nlohmann::json());
  auto positive = [&](const char* key) {
    return l.is_object() && l.contains(key) && l[key].is_number_integer() &&
           l[key].get<int64_t>() > 0;
  };
  if (!positive("tp") || !positive("pp") || !positive("world_size") ||
      l["world_size"].get<int64_t>() != l["tp"].get<int64_t>() * l["pp"].get<int64_t>()) {
    return bad("\"layout\" must hold positive integers tp, pp and world_size = tp * pp");
  }
  const nlohmann::json& ranks = m.value("ranks", nlohmann::json());
  if (!ranks.is_array() || static_cast<int64_t>(ranks.size()) != l["world_size"].get<int64_t>()) {
    return bad("\"ranks\" must list world_size (" + l["world_size"].dump() + ") entries");
  }
  for (size_t r = 0; r < ranks.size(); ++r) {
    const nlohmann::json& e = ranks[r];
    const std::string where = "ranks[" + std::to_string(r) + "]";
    if (!e.is_object() || !e.contains("rank") || !e["rank"].is_number_integer() ||
        e["rank"].get<int64_t>() != static_cast<int64_t>(r)) {
      return bad(where + ": \"rank\" must be " + std::to_string(r));
    }
    const std::string file = StringField(e, "file");
    if (file.empty() || file.find('/') != std::string::npos || file == "." || file == "..") {
      return bad(where + ": \"file\" must be a plain file name");
    }
    if (!e.contains("bytes") || !e["bytes"].is_number_integer() || e["bytes"].get<int64_t>() < 0) {
      return bad(where + ": \"bytes\" must be a non-negative integer");
    }
    const std::string hash = StringField(e, "xxh64");
    if (hash.size() != 16 || hash.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return bad(where + ": \"xxh64\" must be 16 lowercase hex digits");
    }
  }
  return m;
}

Status VerifyShardFile(const nlohmann::json& manifest, int rank, const std::string& dir) {
  const nlohmann::json& ranks = manifest.value("ranks", nlohmann::json());
  if (!ranks.is_array() || rank < 0 || rank >= static_cast<int>(ranks.size())) {
    return Status::InvalidArgument("rank " + std::to_string(rank) + " outside the manifest's " +
                                   std::to_string(ranks.is_array() ? ranks.size() : 0) + " ranks");
  }
  const nlohmann::json& e = ranks[rank];
  if (!e.is_object() || !e.value("file", nlohmann::json()).is_string() ||
      !e.value("bytes", nlohmann::json()).is_number_integer() ||
      !e.value("xxh64", nlohmann::json()).is_string()) {
    return Status::InvalidArgument("manifest rank " + std::to_string(rank) + ": needs \"file\", "
                                   "\"bytes\" and \"xxh64\" (use ReadShardManifest)");
  }
  const std::string path = JoinPath(dir, e["file"].get<std::string>());
  if (!FileExists(path)) return Status::NotFound(path + ": no such file (rank " +
                                                 std::to_string(rank) + " of the manifest)");
  std::error_code ec;
  const int64_t size = static_cast<int64_t>(std::filesystem::file_size(path, ec));
  if (ec) return Status::IoError(path + ": cannot stat: " + ec.message());
  const int64_t expected = e["bytes"].get<int64_t>();
  if (size != expected) {
    return Status::Corruption(path + ": " + std::to_string(size) + " bytes; " +
                              kShardManifestName + " expects " + std::to_string(expected));
  }
  DF11_ASSIGN_OR_RETURN(MappedFile file, MappedFile::Open(path));
  const std::string actual = Hex64(XXH64(file.data(), file.size(), 0));
  const std::string want = e["xxh64"].get<std::string>();
  if (actual != want) {
    return Status::Corruption(path + ": xxh64 " + actual + "; " + kShardManifestName +
                              " expects " + want);
  }
  return Status::Ok();
}

}  // namespace df11
