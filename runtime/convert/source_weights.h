// SPDX-License-Identifier: Apache-2.0
// The BF16 weights of a model directory by name, whether it is BF16 (views into the mapped
// checkpoint) or DF11 (decoded from the unit that holds them; a unit is decoded once and kept
// until Release(), so asking for a layer's seven matrices decodes its unit once). Also hashes the
// directory's stored tensors for `df11 shard`'s manifest. Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "runtime/convert/unit_weights.h"
#include "runtime/core/status.h"
#include "runtime/formats/checkpoint.h"
#include "runtime/formats/model_config.h"
#include "runtime/formats/shard_manifest.h"

namespace df11 {

class SourceWeights {
 public:
  // Opens `dir` (config.json with dfloat11_config: DF11, else BF16); decodes on `threads` threads.
  // NotFound for a missing directory or config.json; InvalidArgument for an unsupported config.
  static StatusOr<std::unique_ptr<SourceWeights>> Open(const std::string& dir, int threads);

  const ModelConfig& config() const { return config_; }
  // config.json without dfloat11_config.
  const nlohmann::ordered_json& config_json() const { return config_json_; }
  bool is_df11() const { return df11_.has_value(); }
  const Checkpoint& checkpoint() const { return df11_ ? df11_->checkpoint : *bf16_; }
  const std::string& dir() const { return dir_; }
  // True when `name` is a stored tensor or a weight inside a DF11 unit.
  bool Has(const std::string& name) const;

  // BF16 words of weight `name`, which must have `shape` (InvalidArgument naming both shapes
  // otherwise; NotFound when absent). Valid until Release() or the next Get() of another unit.
  StatusOr<std::span<const uint16_t>> Get(const std::string& name,
                                          const std::vector<int64_t>& shape);
  // Frees the decoded unit and realigned copies.
  void Release();

  // Hashes the data of every stored tensor whose name starts with one of `prefixes` and that is
  // not hashed yet ("" matches all), on the decode threads.
  void HashTensors(const std::vector<std::string>& prefixes);
  // 16 hex digits: XXH64 over config.json's bytes, then per stored tensor in
  // Checkpoint::tensor_names() order: name '\0' dtype '\0' dims (int64 LE) XXH64(data) (LE).
  // Hashes whatever HashTensors() has not yet.
  std::string SourceHash();

 private:
  SourceWeights() = default;
  Status CheckShape(const std::string& name, const std::vector<int64_t>& actual,
                    const std::vector<int64_t>& expected) const;
  Status Decode(const std::string& unit_name);

  std::string dir_;
  int threads_ = 1;
  nlohmann::ordered_json config_json_;
  std::string config_bytes_;  // config.json as stored
  ModelConfig config_;
  std::optional<Checkpoint> bf16_;
  std::optional<Df11Model> df11_;
  std::map<std::string, std::string> unit_of_;   // DF11: weight name -> unit name
  std::vector<std::optional<uint64_t>> hashes_;  // by tensor_names() index
  std::string decoded_unit_;
  std::vector<uint16_t> decoded_;  // the decoded unit, (n_elements)
  std::map<std::string, UnitWeight> decoded_weights_;
  std::deque<std::vector<uint16_t>> copies_;  // BF16 tensors realigned by Bf16Words
};


}  // namespace df11
