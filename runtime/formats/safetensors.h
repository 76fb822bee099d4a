// SPDX-License-Identifier: Apache-2.0
// Read-only safetensors files: `u64 LE header length | JSON header | data section`. Open() maps the
// file and validates the whole header (dtypes, shapes, offsets, overlaps) before anything uses it,
// so a TensorInfo's bytes are always inside the file. Tensor bytes are NOT aligned beyond 1 byte.
// Thread-safety: immutable after Open(); concurrent reads from any number of threads are safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "runtime/core/mapped_file.h"
#include "runtime/core/status.h"

namespace df11 {

// Element types of the safetensors format (names as written in the header).
enum class DType : uint8_t {
  kBool, kU8, kI8, kU16, kI16, kF16, kBF16, kU32, kI32, kF32, kU64, kI64, kF64, kF8E4M3, kF8E5M2,
};

// Bytes per element (BOOL and the F8 types are 1 byte).
size_t DTypeSize(DType dtype);
// The header spelling: "BF16", "F8_E4M3", ...
std::string_view DTypeName(DType dtype);
// A shape as messages print it: "[4096, 14336]" ("[]" for a scalar).
std::string ShapeText(const std::vector<int64_t>& shape);
// Inverse of DTypeName; InvalidArgument naming the string and the accepted names otherwise.
StatusOr<DType> ParseDType(std::string_view name);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kU8;
  std::vector<int64_t> shape;      // empty for a scalar
  int64_t numel = 0;               // product of shape (1 for a scalar)
  std::span<const uint8_t> bytes;  // numel * DTypeSize(dtype) bytes inside the mapping
};

class SafetensorsFile {
 public:
  // Largest accepted header, as in the Hugging Face implementation.
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;

  // Maps `path` and validates its header. Errors: NotFound/IoError from the OS, Corruption naming
  // the file, the tensor or field, and what was expected.
  static StatusOr<SafetensorsFile> Open(const std::string& path);

  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  // nullptr when the file holds no tensor called `name`. The pointer lives as long as this object.
  const TensorInfo* Find(std::string_view name) const;
  // All tensors sorted by data offset (ties by name).
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // The optional "__metadata__" string map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_.path(); }
  size_t file_size() const { return file_.size(); }

 private:
  SafetensorsFile() = default;
  Status ParseHeader();

  MappedFile file_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> index_;  // name (owned by tensors_) -> position
  std::map<std::string, std::string> metadata_;
};

}  // namespace df11
