// SPDX-License-Identifier: Apache-2.0
// The safetensors weights of a Hugging Face model directory, looked up by tensor name across
// files. Layouts, in order of preference: sharded files listed by model.safetensors.index.json;
// otherwise every *.safetensors file in the directory (a single model.safetensors, or DF11's
// per-unit files plus a remainder model.safetensors). Immutable after Open(); thread-safe reads.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/safetensors.h"

namespace df11 {

inline constexpr char kCheckpointIndexName[] = "model.safetensors.index.json";

class Checkpoint {
 public:
  enum class Layout { kIndexed, kDirectoryScan };

  // Opens the weights of model directory `dir`. With an index: the index must be a JSON object
  // whose "weight_map" maps tensor names to plain file names in `dir` (no '/', not "." or "..");
  // every listed file must open and hold its mapped tensors. Files present but not listed are
  // ignored. Any tensor name found in two files is Corruption. NotFound when there are no weights.
  static StatusOr<Checkpoint> Open(const std::string& dir);
  // Only the file `file_name` of `dir` (a rank's shard: other ranks' files are never mapped).
  static StatusOr<Checkpoint> OpenFile(const std::string& dir, const std::string& file_name);

  Checkpoint(Checkpoint&&) noexcept = default;
  Checkpoint& operator=(Checkpoint&&) noexcept = default;

  // nullptr when no file holds `name`. The pointer lives as long as this Checkpoint.
  const TensorInfo* Find(std::string_view name) const;
  // Like Find, but NotFound naming the tensor and the directory.
  StatusOr<const TensorInfo*> Get(std::string_view name) const;
  // The file that holds `name`, or nullptr.
  const SafetensorsFile* FileOf(std::string_view name) const;

  // Every tensor name: files in file-name order, each file's tensors in data-offset order (a
  // stable order that also reads each mapping front to back).
  const std::vector<std::string>& tensor_names() const { return names_; }
  // The opened files, sorted by file name.
  const std::vector<SafetensorsFile>& files() const { return files_; }
  const std::string& dir() const { return dir_; }
  Layout layout() const { return layout_; }

 private:
  struct Location {
    uint32_t file;
    uint32_t tensor;
  };
  // Lets Find(string_view) look up without building a std::string.
  struct NameHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };

  Checkpoint() = default;
  Status AddFile(const std::string& file_name);
  Status OpenIndexed(const std::string& index_path);
  Status OpenDirectoryScan();

  std::string dir_;
  Layout layout_ = Layout::kDirectoryScan;
  std::vector<SafetensorsFile> files_;
  std::vector<std::string> names_;
  std::unordered_map<std::string, Location, NameHash, std::equal_to<>> index_;
};

// Writes `dir`/model.safetensors.index.json in the Hugging Face form
// {"metadata": {"total_size": N}, "weight_map": {tensor: file, ...}} (keys sorted, 2-space indent),
// atomically. InvalidArgument for a file name that is not a plain name inside `dir`.
Status WriteCheckpointIndex(const std::string& dir,
                            const std::map<std::string, std::string>& weight_map,
                            uint64_t total_size);

}  // namespace df11
