// SPDX-License-Identifier: Apache-2.0
// Builds a safetensors file: tensors in insertion order, contiguous, header JSON padded with spaces
// to a multiple of 8 bytes (as the Hugging Face library writes it). Write() streams the header and
// then each tensor's bytes into "<path>.tmp.<pid>", fsyncs and renames, so a crash never leaves a
// torn file at `path`. Not thread-safe; one writer per thread.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

#include "runtime/core/status.h"
#include "runtime/formats/safetensors.h"

namespace df11 {

class SafetensorsWriter {
 public:
  // Adds a tensor whose bytes the caller keeps alive and unchanged until Write() returns (e.g. a
  // span into another mapped file). InvalidArgument on an empty, reserved ("__metadata__") or
  // duplicate name, a negative dimension, or bytes.size() != numel(shape) * DTypeSize(dtype).
  Status AddTensor(std::string name, DType dtype, std::vector<int64_t> shape,
                   std::span<const uint8_t> bytes);
  // Same, but the writer keeps `bytes` itself.
  Status AddOwnedTensor(std::string name, DType dtype, std::vector<int64_t> shape,
                        std::vector<uint8_t> bytes);
  // Sets one "__metadata__" entry (replacing an earlier value for `key`).
  void SetMetadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  // The padded header JSON exactly as Write() emits it (without the 8-byte length prefix).
  std::string HeaderJson() const;
  // Total bytes of the file Write() produces.
  uint64_t FileSize() const;
  // Writes the file atomically. IoError naming the path and errno text on failure.
  Status Write(const std::string& path) const;

 private:
  struct Pending {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    std::span<const uint8_t> bytes;
    std::vector<uint8_t> owned;  // backs `bytes` for AddOwnedTensor
  };

  std::vector<Pending> tensors_;  // insertion order
  std::unordered_set<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace df11
