// SPDX-License-Identifier: Apache-2.0
// Checkpoint: opens the index or scans the directory, maps each file once, and builds one
// name -> (file, tensor) map, rejecting names that appear in two files.
#include "runtime/formats/checkpoint.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include <nlohmann/json.hpp>

#include "runtime/core/file_util.h"

namespace df11 {
namespace {

using nlohmann::json;

constexpr std::string_view kSafetensorsSuffix = ".safetensors";

// A plain file name that stays inside its directory: no separator, no NUL (which would silently
// cut the name short at open(2)), not "." or "..".
bool IsPlainFileName(std::string_view name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string_view::npos &&
         name.find('\0') == std::string_view::npos;
}

std::string Quoted(std::string_view s) {
  if (s.size() > 200) return "\"" + std::string(s.substr(0, 197)) + "...\"";
  return "\"" + std::string(s) + "\"";
}

}  // namespace

StatusOr<Checkpoint> Checkpoint::Open(const std::string& dir) {
  if (!IsDirectory(dir)) return Status::NotFound(dir + ": not a directory");
  Checkpoint checkpoint;
  checkpoint.dir_ = dir;
  std::string index_path = JoinPath(dir, kCheckpointIndexName);
  if (FileExists(index_path)) {
    checkpoint.layout_ = Layout::kIndexed;
    DF11_RETURN_IF_ERROR(checkpoint.OpenIndexed(index_path));
  } else {
    checkpoint.layout_ = Layout::kDirectoryScan;
    DF11_RETURN_IF_ERROR(checkpoint.OpenDirectoryScan());
  }
  return checkpoint;
}

StatusOr<Checkpoint> Checkpoint::OpenFile(const std::string& dir, const std::string& file_name) {
  if (!IsDirectory(dir)) return Status::NotFound(dir + ": not a directory");
  Checkpoint checkpoint;
  checkpoint.dir_ = dir;
  checkpoint.layout_ = Layout::kDirectoryScan;
  DF11_RETURN_IF_ERROR(checkpoint.AddFile(file_name));
  return checkpoint;
}

const TensorInfo* Checkpoint::Find(std::string_view name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return nullptr;
  return &files_[it->second.file].tensors()[it->second.tensor];
}

StatusOr<const TensorInfo*> Checkpoint::Get(std::string_view name) const {
  const TensorInfo* info = Find(name);
  if (info == nullptr) {
    return Status::NotFound(dir_ + ": no tensor " + Quoted(name) + " in any safetensors file");
  }
  return info;
}

const SafetensorsFile* Checkpoint::FileOf(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &files_[it->second.file];
}

Status Checkpoint::AddFile(const std::string& file_name) {
  DF11_ASSIGN_OR_RETURN(SafetensorsFile file, SafetensorsFile::Open(JoinPath(dir_, file_name)));
  const uint32_t file_id = static_cast<uint32_t>(files_.size());
  const std::vector<TensorInfo>& tensors = file.tensors();
  for (uint32_t i = 0; i < tensors.size(); ++i) {
    auto [it, inserted] = index_.emplace(tensors[i].name, Location{file_id, i});
    if (!inserted) {
      return Status::Corruption(dir_ + ": tensor " + Quoted(tensors[i].name) + " appears in both " +
                                files_[it->second.file].path() + " and " + file.path() +
                                "; expected each tensor in exactly one file");
    }
    names_.push_back(tensors[i].name);
  }
  files_.push_back(std::move(file));
  return Status::Ok();
}

Status Checkpoint::OpenIndexed(const std::string& index_path) {
  DF11_ASSIGN_OR_RETURN(std::string text, ReadFileToString(index_path));
  json index;
  try {
    index = json::parse(text);
  } catch (const json::exception& e) {
    return Status::Corruption(index_path + ": expected valid JSON (" + e.what() + ")");
  }
  if (!index.is_object()) {
    return Status::Corruption(index_path + ": expected a JSON object, got " + index.type_name());
  }
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) {
    return Status::Corruption(index_path + ": \"weight_map\": expected an object of tensor name " +
                              "-> file name");
  }
  std::set<std::string> file_names;
  for (const auto& [tensor, file] : map_it->items()) {
    if (!file.is_string() || !IsPlainFileName(file.get_ref<const std::string&>())) {
      return Status::Corruption(index_path + ": weight_map[" + Quoted(tensor) +
                                "]: expected a plain file name inside " + dir_ + ", got " +
                                Quoted(file.dump()));
    }
    file_names.insert(file.get<std::string>());
  }
  if (file_names.empty()) return Status::Corruption(index_path + ": weight_map is empty");
  for (const std::string& name : file_names) {
    Status status = AddFile(name);
    if (!status.ok()) return status.WithContext(index_path + " lists " + Quoted(name));
  }
  for (const auto& [tensor, file] : map_it->items()) {
    const SafetensorsFile* holder = FileOf(tensor);
    const std::string& expected = file.get_ref<const std::string&>();
    if (holder == nullptr || holder->path() != JoinPath(dir_, expected)) {
      return Status::Corruption(index_path + ": weight_map[" + Quoted(tensor) + "] = " +
                                Quoted(expected) + ", but that file holds no such tensor");
    }
  }
  return Status::Ok();
}

Status Checkpoint::OpenDirectoryScan() {
  std::vector<std::string> file_names;
  std::error_code ec;
  // increment(ec) rather than a range-for, whose operator++ throws.
  for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::error_code type_ec;  // a dangling symlink is skipped, not an error
    if (name.size() > kSafetensorsSuffix.size() && name.ends_with(kSafetensorsSuffix) &&
        it->is_regular_file(type_ec)) {
      file_names.push_back(std::move(name));
    }
  }
  if (ec) return Status::IoError(dir_ + ": cannot list directory: " + ec.message());
  if (file_names.empty()) {
    return Status::NotFound(dir_ + ": no " + kCheckpointIndexName +
                            " and no *.safetensors files; expected model weights");
  }
  std::sort(file_names.begin(), file_names.end());
  for (const std::string& name : file_names) DF11_RETURN_IF_ERROR(AddFile(name));
  return Status::Ok();
}

Status WriteCheckpointIndex(const std::string& dir,
                            const std::map<std::string, std::string>& weight_map,
                            uint64_t total_size) {
  for (const auto& [tensor, file] : weight_map) {
    if (!IsPlainFileName(file)) {
      return Status::InvalidArgument("checkpoint index for " + dir + ": tensor " + Quoted(tensor) +
                                     " maps to " + Quoted(file) +
                                     "; expected a plain file name inside the directory");
    }
  }
  json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  return WriteFileAtomic(JoinPath(dir, kCheckpointIndexName), index.dump(2) + "\n");
}

}  // namespace df11
