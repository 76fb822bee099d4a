// SPDX-License-Identifier: Apache-2.0
#include "runtime/model/deploy_config.h"

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <set>

#include "runtime/core/file_util.h"

namespace df11 {
namespace {

// One mapping of the file: `prefix` is "" for the top level, "parallel." etc. below it.
struct Section {
  const YAML::Node node;
  std::string file, prefix;

  Status Error(const std::string& key, const std::string& what) const {
    return Status::InvalidArgument(file + ": " + prefix + key + ": " + what);
  }
  // Refuses a section that is not a mapping, keys it does not know, and keys given twice.
  Status OnlyKeys(const std::set<std::string>& keys) const {
    const std::string name =
        prefix.empty() ? file : file + ": " + prefix.substr(0, prefix.size() - 1);
    if (!node.IsMap()) return Status::InvalidArgument(name + ": expected a mapping");
    std::set<std::string> seen;
    for (const auto& kv : node) {
      const std::string k = kv.first.Scalar();
      if (!keys.count(k)) return Status::InvalidArgument(name + ": unknown key \"" + k + "\"");
      if (!seen.insert(k).second) return Error(k, "given twice");
    }
    return Status::Ok();
  }
  // The value of `key` as text; nullopt when absent; an error when it is not a single value.
  StatusOr<std::optional<std::string>> Scalar(const std::string& key) const {
    const YAML::Node v = node[key];
    if (!v) return std::optional<std::string>();
    if (!v.IsScalar()) return Error(key, "expected a single value");
    return std::optional<std::string>(v.Scalar());
  }
  Status Text(const std::string& key, std::string* out, bool required = false) const {
    DF11_ASSIGN_OR_RETURN(const std::optional<std::string> v, Scalar(key));
    if (!v) {
      return required ? Status::InvalidArgument(file + ": missing \"" + key + "\"") : Status::Ok();
    }
    if (v->empty()) return Error(key, "expected a path");
    *out = *v;
    return Status::Ok();
  }
  // An integer in [lo, hi], as the command-line flags say it.
  template <typename T>
  Status Integer(const std::string& key, int64_t lo, int64_t hi, T* out) const {
    DF11_ASSIGN_OR_RETURN(const std::optional<std::string> v, Scalar(key));
    if (!v) return Status::Ok();
    int64_t n = 0;
    const char* end = v->data() + v->size();
    const auto [ptr, ec] = std::from_chars(v->data(), end, n);
    if (ec != std::errc() || ptr != end || n < lo || n > hi) {
      const std::string range = hi == INT64_MAX ? ">= " + std::to_string(lo)
                                                : "in [" + std::to_string(lo) + ", " +
                                                      std::to_string(hi) + "]";
      return Error(key, "'" + *v + "' is not an integer " + range);
    }
    *out = static_cast<T>(n);
    return Status::Ok();
  }
  // A finite number in (lo, hi] (`lo_open`) or [lo, hi].
  Status Number(const std::string& key, double lo, bool lo_open, double hi, double* out) const {
    DF11_ASSIGN_OR_RETURN(const std::optional<std::string> v, Scalar(key));
    if (!v) return Status::Ok();
    char* end = nullptr;
    const double x = std::strtod(v->c_str(), &end);
    if (v->empty() || end != v->c_str() + v->size() || !std::isfinite(x) ||
        (lo_open ? x <= lo : x < lo) || x > hi) {
      char range[96];
      std::snprintf(range, sizeof(range), "%s%.10g, %.10g]", lo_open ? "(" : "[", lo, hi);
      return Error(key, "'" + *v + "' is not a number in " + range);
    }
    *out = x;
    return Status::Ok();
  }
};

}  // namespace

StatusOr<DeployConfig> LoadDeployConfig(const std::string& path) {
  DF11_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(path + ": not valid YAML: " + e.what());
  }
  const Section top{root, path, ""};
  DF11_RETURN_IF_ERROR(top.OnlyKeys({"model", "model_config", "parallel", "gpu", "engine"}));
  DeployConfig c;
  DF11_RETURN_IF_ERROR(top.Text("model", &c.model, /*required=*/true));
  c.model_config = c.model;
  DF11_RETURN_IF_ERROR(top.Text("model_config", &c.model_config));
  if (root["parallel"]) {
    const Section s{root["parallel"], path, "parallel."};
    DF11_RETURN_IF_ERROR(s.OnlyKeys({"tp", "pp"}));
    DF11_RETURN_IF_ERROR(s.Integer("tp", 1, 1 << 20, &c.tp));
    DF11_RETURN_IF_ERROR(s.Integer("pp", 1, 1 << 20, &c.pp));
  }
  if (root["gpu"]) {
    const Section s{root["gpu"], path, "gpu."};
    DF11_RETURN_IF_ERROR(s.OnlyKeys({"memory_gb", "memory_fraction"}));
    DF11_RETURN_IF_ERROR(s.Number("memory_gb", 0, /*lo_open=*/true, 1e6, &c.gpu_memory_gb));
    DF11_RETURN_IF_ERROR(s.Number("memory_fraction", 0.01, false, 1, &c.gpu_memory_fraction));
  }
  if (root["engine"]) {
    const Section s{root["engine"], path, "engine."};
    DF11_RETURN_IF_ERROR(
        s.OnlyKeys({"batch_size", "context", "collective_timeout_s", "max_step_tokens"}));
    DF11_RETURN_IF_ERROR(s.Integer("batch_size", 1, INT32_MAX, &c.batch_size));
    DF11_RETURN_IF_ERROR(s.Integer("context", 0, INT64_MAX, &c.context));
    DF11_RETURN_IF_ERROR(s.Integer("max_step_tokens", 1, 1 << 24, &c.max_step_tokens));
    DF11_RETURN_IF_ERROR(
        s.Number("collective_timeout_s", 0, /*lo_open=*/true, 1e6, &c.collective_timeout_s));
  }
  // Relative paths are relative to the file's own directory.
  const std::filesystem::path base = std::filesystem::path(path).parent_path();
  for (std::string* p : {&c.model, &c.model_config}) {
    if (std::filesystem::path(*p).is_relative()) *p = (base / *p).string();
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
