// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/deploy_config.h"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <set>

#include "runtime/core/file_util.h"

namespace df11 {
namespace {

// Reads node[key] as T into *out when present; an error names the file and key otherwise.
template <typename T>
Status Read(const YAML::Node& node, const std::string& key, const std::string& where, T* out,
            bool required = false) {
  const YAML::Node v = node[key];
  if (!v) {
    return required ? Status::InvalidArgument(where + ": missing \"" + key + "\"") : Status::Ok();
  }
  try {
    *out = v.as<T>();
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(where + ": \"" + key + "\" has the wrong type (" + e.msg + ")");
  }
  return Status::Ok();
}

Status OnlyKeys(const YAML::Node& node, const std::set<std::string>& keys, const std::string& where) {
  if (!node.IsMap()) return Status::InvalidArgument(where + ": expected a mapping");
  for (const auto& kv : node) {
    const std::string k = kv.first.as<std::string>();
    if (!keys.count(k)) return Status::InvalidArgument(where + ": unknown key \"" + k + "\"");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<DeployConfig> LoadDeployConfig(const std::string& path) {
  DF11_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ": not valid YAML: " + e.what());
  }
  DF11_RETURN_IF_ERROR(OnlyKeys(root, {"model", "model_config", "parallel", "gpu", "engine"}, path));
  DeployConfig c;
  DF11_RETURN_IF_ERROR(Read(root, "model", path, &c.model, true));
  c.model_config = c.model;
  DF11_RETURN_IF_ERROR(Read(root, "model_config", path, &c.model_config));
  if (root["parallel"]) {
    const std::string w = path + ": parallel";
    DF11_RETURN_IF_ERROR(OnlyKeys(root["parallel"], {"tp", "pp"}, w));
    DF11_RETURN_IF_ERROR(Read(root["parallel"], "tp", w, &c.tp));
    DF11_RETURN_IF_ERROR(Read(root["parallel"], "pp", w, &c.pp));
  }
  if (root["gpu"]) {
    const std::string w = path + ": gpu";
    DF11_RETURN_IF_ERROR(OnlyKeys(root["gpu"], {"memory_gb", "memory_fraction"}, w));
    DF11_RETURN_IF_ERROR(Read(root["gpu"], "memory_gb", w, &c.gpu_memory_gb));
    DF11_RETURN_IF_ERROR(Read(root["gpu"], "memory_fraction", w, &c.gpu_memory_fraction));
  }
  if (root["engine"]) {
    const std::string w = path + ": engine";
    DF11_RETURN_IF_ERROR(OnlyKeys(root["engine"],
                                  {"batch_size", "context", "collective_timeout_s", "max_step_tokens"},
                                  w));
    DF11_RETURN_IF_ERROR(Read(root["engine"], "batch_size", w, &c.batch_size));
    DF11_RETURN_IF_ERROR(Read(root["engine"], "context", w, &c.context));
    DF11_RETURN_IF_ERROR(Read(root["engine"], "collective_timeout_s", w, &c.collective_timeout_s));
    DF11_RETURN_IF_ERROR(Read(root["engine"], "max_step_tokens", w, &c.max_step_tokens));
  }
  // Relative paths are relative to the file's own directory.
  const std::filesystem::path base = std::filesystem::path(path).parent_path();
  for (std::string* p : {&c.model, &c.model_config}) {
    if (!p->empty() && std::filesystem::path(*p).is_relative()) *p = (base / *p).string();
  }
  if (c.tp < 1 || c.pp < 1) return Status::InvalidArgument(path + ": parallel.tp and .pp must be >= 1");
  if (c.gpu_memory_gb <= 0 || c.gpu_memory_fraction <= 0 || c.gpu_memory_fraction > 1) {
    return Status::InvalidArgument(path + ": gpu.memory_gb must be > 0 and gpu.memory_fraction in (0, 1]");
  }
  if (c.batch_size < 1 || c.context < 0 || c.collective_timeout_s <= 0 ||
      c.max_step_tokens < 1) {
    return Status::InvalidArgument(path + ": engine.batch_size must be >= 1, context >= 0, "
                                   "collective_timeout_s > 0, max_step_tokens >= 1");
  }
  if (c.batch_size > c.max_step_tokens) {
    return Status::InvalidArgument(path + ": engine.batch_size " + std::to_string(c.batch_size) +
                                   " is larger than engine.max_step_tokens " +
                                   std::to_string(c.max_step_tokens) +
                                   " (every running sequence adds a token to each step)");
  }
  return c;
}

MemoryPlanOptions PlanOptionsOf(const DeployConfig& d, const MemoryPlanOptions& flags) {
  MemoryPlanOptions o = flags;
  o.tp = d.tp;
  o.pp = d.pp;
  o.gpu_memory_bytes = d.gpu_memory_gb * (1 << 30);
  o.memory_fraction = d.gpu_memory_fraction;
  o.context = d.context;
  o.workspace_tokens = d.max_step_tokens;
  return o;
}

}  // namespace df11
