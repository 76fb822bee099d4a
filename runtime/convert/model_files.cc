// SPDX-License-Identifier: Apache-2.0
#include "runtime/convert/model_files.h"

#include <cstring>
#include <filesystem>
#include <system_error>

#include "runtime/core/file_util.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/model_config.h"
#include "runtime/formats/weight_set.h"

namespace df11 {

Status CheckBf16WeightsAgainstConfig(const std::string& dir, const Checkpoint& ckpt) {
  auto config = LoadModelConfig(dir, ConfigUse::kConvert);
  // Not a model this runtime serves: nothing to check against.
  if (!config.ok() || !config->unsupported.empty()) return Status::Ok();
  return CheckModelWeights(*config, ckpt, {}, dir);
}

Status CopySideFiles(const std::string& src_dir, const std::string& out_dir,
                     const std::vector<std::string>& skip) {
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(src_dir, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    const std::string name = entry.path().filename().string();
    if (name.ends_with(".safetensors") || name == kCheckpointIndexName) continue;
    bool skipped = false;
    for (const std::string& s : skip) skipped = skipped || s == name;
    if (skipped) continue;
    DF11_RETURN_IF_ERROR(CopyFile(entry.path().string(), JoinPath(out_dir, name)));
  }
  if (ec) return Status::IoError(src_dir + ": cannot list: " + ec.message());
  return Status::Ok();
}

StatusOr<std::span<const uint16_t>> Bf16Words(const TensorInfo& t, std::vector<uint16_t>* storage) {
  if (t.dtype != DType::kBF16) {
    return Status::InvalidArgument("tensor " + t.name + " is " + std::string(DTypeName(t.dtype)) +
                                   "; DF11 codes BF16 weights only");
  }
  const size_t n = t.bytes.size() / 2;
  if (reinterpret_cast<uintptr_t>(t.bytes.data()) % alignof(uint16_t) == 0) {
    return std::span<const uint16_t>(reinterpret_cast<const uint16_t*>(t.bytes.data()), n);
  }
  storage->resize(n);
  std::memcpy(storage->data(), t.bytes.data(), t.bytes.size());
  return std::span<const uint16_t>(*storage);
}

}  // namespace df11
